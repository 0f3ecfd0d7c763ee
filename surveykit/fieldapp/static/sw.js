// The field app's service worker. The server puts APP_VERSION and APP_FILES above this line.
// A release is installed whole into its own cache; the previous release's cache stays until this
// worker activates, so the app never runs half old, half new. Records live in IndexedDB, which
// this worker never touches; /api/ requests always go to the network.

const PREFIX = "fieldapp-";
const CACHE = PREFIX + APP_VERSION;
const INDEX = new URL("./", self.registration.scope).href;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(APP_FILES.map((file) => new Request(new URL(file, self.registration.scope), { cache: "reload" })));
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "skip-waiting") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/app/")) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const key = request.mode === "navigate" ? INDEX : request;
    const hit = await cache.match(key, { ignoreSearch: true });
    if (hit) return hit;
    return fetch(request);
  })());
});
