// The relay's certificate hashes, as /fingerprint serves them.  The page asks for JSON
// ({"current", "next", "hashes": [current, next]}, relay/state.py) and pins every hash in it, so a
// session opened just after the relay switched to its announced next certificate still verifies.
// A relay (or a fingerprintUrl) that answers plain text gets the old reading: one hex hash.

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** Hex SHA-256 hashes (lowercase, current first) from a /fingerprint body; throws on anything else. */
export function parseFingerprints(body) {
  const text = String(body).trim();
  let hashes;
  if (text.startsWith('{')) {
    let doc;
    try { doc = JSON.parse(text); } catch { throw new Error('not a fingerprint document (bad JSON)'); }
    hashes = Array.isArray(doc.hashes) ? doc.hashes : [doc.current, doc.next];
  } else {
    hashes = text.split(/[\s,]+/);
  }
  hashes = hashes.filter((h) => typeof h === 'string' && h !== '').map((h) => h.replace(/:/g, '').toLowerCase());
  if (!hashes.length || !hashes.every((h) => HEX64.test(h))) throw new Error('not a SHA-256 hex digest');
  return [...new Set(hashes)];
}
