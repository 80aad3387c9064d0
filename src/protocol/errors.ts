/**
 * The one error type that protocol decoders raise. Every malformed input —
 * truncated, oversized, badly encoded, undecryptable — becomes a
 * `ProtocolError` with a machine-readable `code`; nothing else escapes a
 * decoder (no RangeError from Buffer, no TypeError).
 */
export type ProtocolErrorCode =
  | 'TRUNCATED' // fewer bytes than the structure needs
  | 'TRAILING_BYTES' // bytes left over after a complete structure
  | 'VARINT_OVERFLOW' // 7-bit length longer than 5 bytes or above int32 max
  | 'BAD_UTF8' // string bytes are not valid UTF-8
  | 'NEGATIVE_LENGTH' // int32 length or count below zero
  | 'LENGTH_LIMIT' // a length above the configured limit
  | 'BAD_VALUE' // a value outside the range the field allows
  | 'BAD_MAGIC' // handshake GUID is not the protocol GUID
  | 'BAD_VERSION' // protocol version other than 1000
  | 'BAD_MODE' // unknown encryption mode byte
  | 'DECRYPT_FAILED' // an AES frame failed to decrypt (any cause)
  | 'REPLAYED' // an AES frame already accepted (the replay cache, §3)
  | 'UNKNOWN_COMMAND' // unknown command code for the agent type
  | 'UNKNOWN_EVENT'; // unknown event code

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function isProtocolError(err: unknown): err is ProtocolError {
  return err instanceof ProtocolError;
}
