// The page's ?jwt= token goes on the WebTransport URL as ?jwt= (relay/auth.py reads it there).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relayUrlWithToken } from '../../viewer/web/moq/url.js';

test('no token: the relay URL is unchanged', () => {
  assert.equal(relayUrlWithToken('https://127.0.0.1:4443/', null), 'https://127.0.0.1:4443/');
  assert.equal(relayUrlWithToken('https://127.0.0.1:4443/', ''), 'https://127.0.0.1:4443/');
});

test('a token is added as ?jwt=, other query parameters kept, characters escaped', () => {
  assert.equal(relayUrlWithToken('https://127.0.0.1:4443/', 'aa.bb.cc'), 'https://127.0.0.1:4443/?jwt=aa.bb.cc');
  const url = new URL(relayUrlWithToken('https://relay.example:4443/moq?x=1', 'a+b/c=d'));
  assert.equal(url.pathname, '/moq');
  assert.equal(url.searchParams.get('x'), '1');
  assert.equal(url.searchParams.get('jwt'), 'a+b/c=d');
});

test('the player passes config.jwt through relayUrlWithToken to MoqSession.connect', async () => {
  const { readFile } = await import('node:fs/promises');
  const src = await readFile(new URL('../../viewer/web/player.js', import.meta.url), 'utf8');
  assert.match(src, /jwt: params\.get\('jwt'\)/);
  assert.match(src, /MoqSession\.connect\(relayUrlWithToken\(config\.relayUrl, config\.jwt\)/);
});
