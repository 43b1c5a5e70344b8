/** A response outside the envelope: another media type, or JSON a standard defines (JWKS). */
export class PlainReply<T> {
  constructor(
    readonly body: T,
    readonly contentType: string,
    /** Headers of its own, replacing those every response gets (docs/design.md §2). */
    readonly headers: Record<string, string> = {},
  ) {}
}
