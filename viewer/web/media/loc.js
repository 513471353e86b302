// LOC object properties (draft-ietf-moq-loc-04 § LOC Properties), as our publisher
// sends them (moq/media/loc.py): TIMESTAMP is wall-clock microseconds since the Unix
// epoch when there is no TIMESCALE (§ Timestamp), so latency = now - timestamp.

import { decodeKvpBlock } from '../moq/types.js';

export const TIMESCALE = 0x08;
export const VIDEO_FRAME_MARKING = 0x09;
export const AUDIO_LEVEL = 0x0c;
export const VIDEO_CONFIG = 0x0d; // codec extradata (avcC for H.264), on key frames
export const AUDIO_CONFIG = 0x0f;
export const TIMESTAMP = 0x10;

/** Parse an Object Properties block; the first occurrence of each property wins. */
export function parseLoc(block) {
  const loc = { timestamp: null, timescale: null, videoConfig: null, audioConfig: null, audioLevel: null };
  if (!block || !block.length) return loc;
  for (const [key, value] of decodeKvpBlock(block)) {
    if (key === TIMESTAMP && loc.timestamp === null) loc.timestamp = Number(value);
    else if (key === TIMESCALE && loc.timescale === null) loc.timescale = Number(value);
    else if (key === VIDEO_CONFIG && loc.videoConfig === null) loc.videoConfig = value;
    else if (key === AUDIO_CONFIG && loc.audioConfig === null) loc.audioConfig = value;
    else if (key === AUDIO_LEVEL && loc.audioLevel === null) loc.audioLevel = Number(value);
  }
  return loc;
}

/** The capture time in wall-clock microseconds, or null when the timestamp is media time. */
export function wallclockUs(loc) {
  if (loc.timestamp === null) return null;
  return loc.timescale === null ? loc.timestamp : null;
}

/** Media time in microseconds (wall-clock or timescale-based). */
export function mediaTimeUs(loc) {
  if (loc.timestamp === null) return null;
  return loc.timescale ? Math.round((loc.timestamp * 1e6) / loc.timescale) : loc.timestamp;
}
