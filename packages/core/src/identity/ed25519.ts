import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

/**
 * Ed25519 through Node's own crypto (OpenSSL): the same keys and signatures as any Ed25519 (RFC 8032 is
 * deterministic), at a fraction of tweetnacl's cost in pure JavaScript: loading it, deriving the key twice
 * and signing took ~180 ms of a loaded start-up, this ~1.5 ms (decision 0008). The identity file keeps the
 * 32-byte seed, as 0.3.x writes it; a PKCS#8 wrapper turns it into a key object.
 */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The private key object of a 32-byte seed. */
export function privateKeyOf(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
}

/** The 32-byte public key of a seed. */
export function publicKeyOf(seed: Uint8Array): Uint8Array {
  const jwk = createPublicKey(privateKeyOf(seed)).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
}

/** A detached 64-byte signature. */
export function signDetached(message: Uint8Array, key: KeyObject): Uint8Array {
  return new Uint8Array(sign(null, message, key));
}

/** Whether `signature` is `publicKey`'s over `message`. */
export function verifyDetached(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
      format: 'jwk',
    });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
