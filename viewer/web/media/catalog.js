// The MSF catalog (draft-ietf-moq-msf § Catalog): a JSON document on track "catalog";
// object 0 of each catalog group is a complete catalog (we do not apply delta updates).

export const CATALOG_TRACK = 'catalog';

export class CatalogError extends Error {}

/** Parse and check the fields we rely on (§ Root Catalog Fields, § Track Object Fields). */
export function parseCatalog(bytes) {
  let obj;
  try {
    obj = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new CatalogError(`catalog is not JSON: ${e.message}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new CatalogError('catalog is not a JSON object');
  if ('deltaUpdate' in obj) throw new CatalogError('delta catalog updates are not supported');
  if (!Array.isArray(obj.tracks)) throw new CatalogError("catalog without a 'tracks' array");
  for (const t of obj.tracks) {
    if (!t || typeof t.name !== 'string') throw new CatalogError('a track entry without a name');
  }
  return obj;
}

/** 'video' | 'audio' | other role of a catalog track (§ Track role), guessed from the codec if absent. */
export function trackRole(t) {
  if (t.role) return t.role;
  const codec = String(t.codec ?? '');
  if (/^(avc[13]|hvc1|hev1|vp0?[89]|av01)/.test(codec)) return 'video';
  if (/^(opus|mp4a|flac|pcm|ulaw|alaw)/.test(codec)) return 'audio';
  return null;
}

/** WebCodecs audio codec string for a catalog codec. */
export const audioCodec = (t) => (t.codec === 'opus' ? 'opus' : t.codec);

/**
 * Choose the tracks to play: the largest supported video track (a catalog may list
 * several qualities) and the first supported audio track.  `supported(kind, track)` is an
 * async predicate (WebCodecs isConfigSupported in the page).
 */
export async function chooseTracks(catalog, supported) {
  const byRole = (role) => catalog.tracks.filter((t) => trackRole(t) === role && (t.packaging ?? 'loc') === 'loc');
  const videos = byRole('video').sort((a, b) => (b.width ?? 0) * (b.height ?? 0) - (a.width ?? 0) * (a.height ?? 0));
  let video = null;
  for (const t of videos) if (await supported('video', t)) { video = t; break; }
  let audio = null;
  for (const t of byRole('audio')) if (await supported('audio', t)) { audio = t; break; }
  return { video, audio };
}
