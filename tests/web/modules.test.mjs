// Every module of the viewer parses, and the browser-only ones import cleanly in node
// (their top level must not touch browser globals, so the codec tests can import them).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'viewer', 'web');

function jsFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? jsFiles(path) : name.endsWith('.js') ? [path] : [];
  });
}

test('every viewer module is valid JavaScript', () => {
  const files = jsFiles(WEB);
  assert.ok(files.length >= 10, files.join());
  for (const f of files) execFileSync(process.execPath, ['--check', f]);
});

test('session and audio modules import without a browser', async () => {
  const session = await import('../../viewer/web/moq/session.js');
  assert.equal(session.MOQT_PROTOCOL, 'moqt-18');
  assert.deepEqual(session.hexToBytes('00ff10'), Uint8Array.of(0, 255, 16));
  const audio = await import('../../viewer/web/media/audio.js');
  assert.deepEqual(audio.AudioPipeline.config({ codec: 'opus', samplerate: 48000, channelConfig: '2' }),
    { codec: 'opus', sampleRate: 48000, numberOfChannels: 2 });
});

test('index.html references the modules and the elements the tests and player use', async () => {
  const { readFileSync } = await import('node:fs');
  const html = readFileSync(join(WEB, 'index.html'), 'utf-8');
  for (const id of ['video', 'stats', 'overlay', 'overlay-toggle', 'error', 'audio-toggle']) {
    assert.match(html, new RegExp(`id="${id}"`));
  }
  assert.match(html, /<script type="module" src="player.js">/);
});
