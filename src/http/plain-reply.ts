/** A response outside the envelope: another media type, or JSON a standard defines (JWKS, SSF). */
export class PlainReply<T> {
  constructor(
    readonly body: T,
    readonly contentType: string,
    /** Headers of its own, replacing those every response gets (docs/design.md §2). */
    readonly headers: Record<string, string> = {},
    readonly status: 200 | 201 = 200,
  ) {}
}

/** A 204: done, nothing to say (SSF's stream deletion and verification). */
export class NoContent {}
