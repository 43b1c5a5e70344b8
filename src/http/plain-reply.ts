/** A response outside the envelope: another media type, or JSON a standard defines (JWKS). */
export class PlainReply<T> {
  constructor(
    readonly body: T,
    readonly contentType: string,
  ) {}
}
