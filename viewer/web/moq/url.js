// The relay URL a session connects to: the page's ?jwt= token goes on the WebTransport URL as
// ?jwt=, where moq-relay (and moq-dev/moq's relay) read a browser's token.  Pure, for node tests.

/** `relayUrl` with `jwt` set as its `jwt` query parameter (unchanged when there is no token). */
export function relayUrlWithToken(relayUrl, jwt) {
  if (!jwt) return relayUrl;
  const url = new URL(relayUrl);
  url.searchParams.set('jwt', jwt);
  return url.href;
}
