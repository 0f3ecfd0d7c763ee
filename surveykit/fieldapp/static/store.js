// The one store of the field app: IndexedDB behind a few plain functions. Everything the
// researcher typed lives here, never in the service worker's cache, so a new release of the app
// or a cleared cache cannot touch it. Schema changes go through upgrade() one version at a time.

const DB_NAME = "surveykit-field";
const DB_VERSION = 1;
let opened = null;
let openDb = null; // the same database once open, for writes that start at once

function upgrade(db, oldVersion) {
  if (oldVersion < 1) {
    db.createObjectStore("kv", { keyPath: "key" });
    db.createObjectStore("sessions", { keyPath: "device_id" });
    db.createObjectStore("instruments", { keyPath: "key" });
    const interviews = db.createObjectStore("interviews", { keyPath: "uuid" });
    interviews.createIndex("device_id", "device_id");
    const blocks = db.createObjectStore("blocks", { keyPath: "key" });
    blocks.createIndex("device_id", "device_id");
    const registry = db.createObjectStore("registry", { keyPath: "key" });
    registry.createIndex("device_id", "device_id");
  }
  // Later versions: `if (oldVersion < 2) { ... }`, never dropping a store that holds records.
}

export class StoreUnavailable extends Error {}

export function open() {
  if (opened) return opened;
  opened = new Promise((resolve, reject) => {
    if (!("indexedDB" in self) || !self.indexedDB) {
      reject(new StoreUnavailable("no IndexedDB"));
      return;
    }
    let request;
    try {
      request = indexedDB.open(DB_NAME, DB_VERSION);
    } catch (err) {
      reject(new StoreUnavailable(String(err)));
      return;
    }
    request.onupgradeneeded = (event) => upgrade(request.result, event.oldVersion);
    request.onsuccess = () => {
      const db = request.result;
      // Another tab opening a newer schema: let it upgrade, and reload onto the new code.
      db.onversionchange = () => { db.close(); openDb = null; location.reload(); };
      openDb = db;
      resolve(db);
    };
    request.onerror = () => reject(new StoreUnavailable(String(request.error)));
    request.onblocked = () => reject(new StoreUnavailable("blocked by another tab"));
  });
  opened.catch(() => { opened = null; });
  return opened;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

function result(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function get(storeName, key) {
  const db = await open();
  return result(db.transaction(storeName).objectStore(storeName).get(key));
}

export async function all(storeName, index, value) {
  const db = await open();
  const store = db.transaction(storeName).objectStore(storeName);
  return result(index ? store.index(index).getAll(value) : store.getAll());
}


function write(db, items) {
  const names = [...new Set(items.map(([name]) => name))];
  const tx = db.transaction(names, "readwrite");
  // put() copies the value as it is now, so the caller may go on changing it.
  for (const [name, value] of items) tx.objectStore(name).put(value);
  const finished = done(tx);
  // Ask for the commit now rather than when the current task (a keystroke's events) ends.
  if (tx.commit) tx.commit();
  return finished;
}

// Writes several objects (in several stores) in one transaction: all or nothing. Once the
// database is open the write starts before this returns.
export function put(...items) {
  if (openDb) {
    try {
      return write(openDb, items);
    } catch (err) {
      if (err.name !== "InvalidStateError") return Promise.reject(err);
      openDb = null; // closed under us (another tab upgrading): open again
      opened = null;
    }
  }
  return open().then((db) => write(db, items));
}

export async function remove(storeName, key) {
  const db = await open();
  const tx = db.transaction(storeName, "readwrite");
  tx.objectStore(storeName).delete(key);
  return done(tx);
}

// Read, change and write one object in one transaction (no lost update between two tabs).
export async function update(storeName, key, change) {
  const db = await open();
  const tx = db.transaction(storeName, "readwrite");
  const store = tx.objectStore(storeName);
  const current = await result(store.get(key));
  const next = change(current);
  if (next !== undefined) store.put(next);
  await done(tx);
  return next;
}

export async function getValue(key, fallback = null) {
  const row = await get("kv", key);
  return row === undefined ? fallback : row.value;
}

export function setValue(key, value) {
  return put(["kv", { key, value }]);
}

export function isQuotaError(err) {
  return Boolean(err) && (err.name === "QuotaExceededError" || /quota/i.test(String(err.message || err)));
}
