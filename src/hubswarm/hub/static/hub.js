// hubswarm hub page: sort, search, resumable uploads (tus) with progress, delete, copy sha256,
// live stats.
// Loaded from /static/ (the page's Content-Security-Policy allows no inline script). Names are
// only ever inserted with textContent, never as HTML.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrfMeta = $("#csrf");
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  const table = $("#listing");

  function quotePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }

  function humanSize(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  // --- sort and search --------------------------------------------------------------------
  let sortKey = "name", sortDir = 1;

  function sortRows() {
    const body = table.tBodies[0];
    const rows = $$("tr", body);
    rows.sort((a, b) => {
      // Folders first, as every file manager does.
      const fa = a.classList.contains("folder"), fb = b.classList.contains("folder");
      if (fa !== fb) return fa ? -1 : 1;
      const va = a.dataset[sortKey], vb = b.dataset[sortKey];
      const cmp = sortKey === "name"
        ? va.localeCompare(vb, undefined, { numeric: true, sensitivity: "base" })
        : Number(va) - Number(vb);
      return cmp * sortDir;
    });
    rows.forEach((r) => body.appendChild(r));
    $$("th[data-sort]", table).forEach((th) => {
      if (th.dataset.sort === sortKey) {
        th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    });
  }

  function bindSort() {
    $$("th[data-sort]", table).forEach((th) => {
      th.addEventListener("click", () => {
        sortDir = th.dataset.sort === sortKey ? -sortDir : 1;
        sortKey = th.dataset.sort;
        sortRows();
      });
    });
  }

  function applySearch() {
    const q = $("#search").value.trim().toLowerCase();
    $$("tbody tr", table).forEach((tr) => {
      tr.hidden = q !== "" && !tr.dataset.name.toLowerCase().includes(q);
    });
  }

  // --- row actions ------------------------------------------------------------------------
  function bindRows(root) {
    $$("button.delete", root).forEach((b) => b.addEventListener("click", onDelete));
    $$("button.copy", root).forEach((b) => b.addEventListener("click", onCopy));
  }

  async function onDelete(ev) {
    const b = ev.currentTarget;
    if (!b.classList.contains("armed")) {
      // Two clicks instead of a dialog: the first arms the button for a few seconds.
      b.classList.add("armed");
      b.textContent = "confirm delete";
      setTimeout(() => { b.classList.remove("armed"); b.textContent = "delete"; }, 4000);
      return;
    }
    b.disabled = true;
    const resp = await fetch("/files/" + quotePath(b.dataset.path.replace(/\/$/, "")) +
      (b.dataset.path.endsWith("/") ? "/" : ""), {
      method: "DELETE", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
    });
    if (resp.status === 204) {
      b.closest("tr").remove();
    } else {
      b.disabled = false;
      let msg = resp.status + "";
      try { msg = (await resp.json()).error; } catch (e) { /* not JSON */ }
      b.textContent = "failed: " + msg;
    }
  }

  async function onCopy(ev) {
    const b = ev.currentTarget;
    try {
      await navigator.clipboard.writeText(b.dataset.sha);
      b.textContent = "copied";
    } catch (e) {
      // No clipboard (plain http from another host): select the digest for Ctrl+C instead.
      const code = b.parentElement.querySelector("code");
      code.textContent = b.dataset.sha;
      window.getSelection().selectAllChildren(code);
      b.textContent = "selected";
    }
  }

  // --- upload: tus 1.0, resumable (https://tus.io/protocols/resumable-upload) -------------
  // Each file: POST /uploads/ with its path in Upload-Metadata, then PATCHes of CHUNK bytes.
  // After a dropped connection or a PATCH the hub refused for a passing reason, HEAD asks the
  // hub's offset and the upload goes on from there, after a back-off, at most
  // RETRY_DELAYS_MS.length times in a row. When the hub offers sha256 and the page is a secure
  // context (crypto.subtle: https, or loopback), every PATCH carries Upload-Checksum and the hub
  // keeps all of it or none. The upload's URL is kept in localStorage until it lands, so a
  // reloaded page resumes it too (keyed as tus-js-client does: target, size, modification time).
  // Each PATCH costs a round trip and a request on the hub; a checksummed one is lost whole
  // when the connection drops. <body data-upload-chunk="N"> overrides it (the tests' files are
  // small).
  const CHUNK = 32 * 1024 * 1024;
  // About a minute in all: a PATCH cut off without the hub noticing holds the upload (423)
  // until the hub's slow-body rule or read timeout (60 s) ends it.
  const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
  // A PATCH with no upload progress for this long is given up and resumed (a silent network).
  const STALL_MS = 60000;
  // A HEAD, POST or OPTIONS gets this long.
  const REQUEST_MS = 30000;
  // 408 slow body, 409 offset not the hub's, 423 a PATCH still running there, 429, 460 bytes
  // damaged on the way, 5xx but 507 (disk full): worth another try. 404/410: start over.
  const RETRY_STATUS = new Set([408, 409, 423, 429, 460, 500, 502, 503, 504]);
  const queue = [];
  let busy = false;
  let tusInfo = null;

  class Retry extends Error {}

  function b64(bytes) {
    let s = "";
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s);
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // One request: resolves with the finished XHR whatever its status, throws Retry when the
  // connection failed, stalled or timed out.
  function send(method, url, headers, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      let stall = null;
      const watch = () => {
        clearTimeout(stall);
        stall = setTimeout(() => xhr.abort(), STALL_MS);
      };
      xhr.open(method, url);
      for (const [k, v] of Object.entries({ "Tus-Resumable": "1.0.0", "X-CSRF-Token": csrf,
        ...headers })) xhr.setRequestHeader(k, v);
      if (onProgress) {
        xhr.upload.addEventListener("progress", (e) => { watch(); onProgress(e.loaded); });
        watch();
      } else {
        xhr.timeout = REQUEST_MS;
      }
      const fail = (why) => () => { clearTimeout(stall); reject(new Retry(why)); };
      xhr.addEventListener("load", () => { clearTimeout(stall); resolve(xhr); });
      xhr.addEventListener("error", fail("connection lost"));
      xhr.addEventListener("abort", fail("stalled"));
      xhr.addEventListener("timeout", fail("timed out"));
      xhr.send(body === undefined ? null : body);
    });
  }

  function refused(xhr, what) {
    let msg = xhr.status + "";
    try { msg += " " + JSON.parse(xhr.responseText).error; } catch (e) { /* not JSON */ }
    if (RETRY_STATUS.has(xhr.status)) return new Retry(what + ": " + msg);
    const err = new Error(what + ": " + msg);
    err.gone = xhr.status === 404 || xhr.status === 410;
    return err;
  }

  function hubOffers() {
    if (!tusInfo) {
      tusInfo = send("OPTIONS", "/uploads/", {}).then((xhr) => {
        const algs = (xhr.getResponseHeader("Tus-Checksum-Algorithm") || "").split(",");
        return { sha256: algs.map((a) => a.trim()).includes("sha256") && !!window.isSecureContext &&
          !!(window.crypto && crypto.subtle) };
      }).catch(() => ({ sha256: false }));
    }
    return tusInfo;
  }

  const stored = {
    get(key) { try { return localStorage.getItem(key); } catch (e) { return null; } },
    set(key, v) { try { localStorage.setItem(key, v); } catch (e) { /* private mode */ } },
    drop(key) { try { localStorage.removeItem(key); } catch (e) { /* private mode */ } },
  };

  async function create(job) {
    const xhr = await send("POST", "/uploads/", {
      "Upload-Length": String(job.file.size),
      "Upload-Metadata": "filename " + b64(new TextEncoder().encode(job.target)),
    });
    if (xhr.status !== 201) throw refused(xhr, "create");
    // Only the path: the hub names its own origin, which a reverse proxy may have changed.
    const path = new URL(xhr.getResponseHeader("Location") || "", location.href).pathname;
    if (!path.startsWith("/uploads/")) throw new Error("create: unexpected Location");
    return path;
  }

  // The hub's Upload-Offset, checked: a whole number from `from` to the file's size.
  function offsetOf(xhr, job, from) {
    const text = xhr.getResponseHeader("Upload-Offset") || "";
    const n = Number(text);
    if (!/^[0-9]+$/.test(text) || n < from || n > job.file.size) {
      throw new Error("the hub answered Upload-Offset " + JSON.stringify(text));
    }
    return n;
  }

  async function hubOffset(job, url) {
    const xhr = await send("HEAD", url, {});
    if (xhr.status !== 200) throw refused(xhr, "offset");
    if (Number(xhr.getResponseHeader("Upload-Length")) !== job.file.size) {
      const err = new Error("offset: another upload");
      err.gone = true;
      throw err;
    }
    return offsetOf(xhr, job, 0);
  }

  function chunkEnd(job, offset) {
    return Math.min(offset + (Number(document.body.dataset.uploadChunk) || CHUNK), job.file.size);
  }

  // "sha256 <base64>" of the file's bytes from offset to the chunk's end. The bytes are read
  // for the digest only: the PATCH sends the Blob, which Chromium streams from the disk.
  async function checksum(job, offset) {
    const bytes = await job.file.slice(offset, chunkEnd(job, offset)).arrayBuffer();
    return "sha256 " + b64(await crypto.subtle.digest("SHA-256", bytes));
  }

  async function patchChunk(job, url, offset, sha256) {
    const end = chunkEnd(job, offset);
    const headers = {
      "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(offset),
    };
    if (sha256) {
      const ready = job.nextChecksum && job.nextChecksum.offset === offset;
      headers["Upload-Checksum"] = await (ready
        ? job.nextChecksum.digest.catch(() => checksum(job, offset)) : checksum(job, offset));
      // The next chunk's digest while this one is on its way.
      job.nextChecksum = end < job.file.size ? { offset: end, digest: checksum(job, end) } : null;
      job.nextChecksum?.digest.catch(() => {});  // a failed read is retried when it is due
    }
    const body = job.file.slice(offset, end);
    const xhr = await send("PATCH", url, headers, body, (sent) => progress(job, offset + sent));
    if (xhr.status !== 204) throw refused(xhr, "upload");
    return offsetOf(xhr, job, offset + 1);  // a 204 that moved nothing would loop for ever
  }

  function progress(job, done) {
    job.bar.value = done;
    job.state.textContent = Math.floor((100 * done) / (job.file.size || 1)) + "%";
  }

  function finish(job, error) {
    job.bar.value = error ? job.bar.value : job.bar.max;
    job.state.textContent = error ? "failed: " + error.message : "done";
    job.state.title = error ? error.message : "";
    job.state.className = "state " + (error ? "failed" : "done");
    job.li.dataset.result = error ? "failed" : "done";
  }

  async function upload(job) {
    const { sha256 } = await hubOffers();
    const file = job.file;
    const key = "hubswarm-upload:" + [job.target, file.size, file.lastModified].join(":");
    let url = stored.get(key);
    if (url !== null && !url.startsWith("/uploads/")) url = null;
    let offset = null; // null: ask the hub (HEAD)
    let failures = 0;
    job.state.textContent = "0%";
    for (;;) {
      try {
        if (url === null) {
          url = await create(job);
          stored.set(key, url);
          offset = 0;
        }
        if (offset === null) offset = await hubOffset(job, url);
        while (offset < file.size) {
          offset = await patchChunk(job, url, offset, sha256);
          failures = 0;
        }
        stored.drop(key);
        return finish(job, null);
      } catch (err) {
        if (!(err instanceof Retry) && !err.gone) {
          stored.drop(key);
          return finish(job, err);
        }
        failures += 1;
        if (failures > RETRY_DELAYS_MS.length) {
          stored.drop(key);
          return finish(job, err);
        }
        if (err.gone) {
          // Expired, terminated, or not ours: start over with a new upload.
          stored.drop(key);
          url = null;
          progress(job, 0);
        }
        offset = null;
        job.li.dataset.retries = String(Number(job.li.dataset.retries || 0) + 1);
        job.state.textContent = "retrying";
        job.state.title = err.message;
        await sleep(RETRY_DELAYS_MS[failures - 1]);
      }
    }
  }

  function addUploads(items) {
    const list = $("#uploads");
    const base = $("#drop").dataset.folder;
    for (const { file, path } of items) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = path;
      const bar = document.createElement("progress");
      bar.max = file.size || 1;
      bar.value = 0;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = "queued";
      li.append(label, bar, state);
      list.appendChild(li);
      queue.push({ file, target: (base ? base + "/" : "") + path, bar, state, li });
    }
    if (!busy) runQueue();
  }

  async function runQueue() {
    busy = true;
    while (queue.length) await upload(queue.shift());
    busy = false;
    await refreshListing();
    document.body.dataset.uploads = "idle";
  }

  async function refreshListing() {
    const resp = await fetch(location.pathname, {
      headers: { Accept: "text/html" }, credentials: "same-origin",
    });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.querySelector("#listing tbody");
    if (!fresh) return;
    table.tBodies[0].replaceWith(document.adoptNode(fresh));
    const summary = doc.querySelector(".summary");
    if (summary) $(".summary").textContent = summary.textContent;
    const empty = $(".empty");
    if (empty) empty.remove();
    bindRows(table);
    sortRows();
    applySearch();
  }

  function fromInput(input) {
    const items = Array.from(input.files).map((file) => ({
      file, path: file.webkitRelativePath || file.name,
    }));
    input.value = "";
    addUploads(items);
  }

  // Folders dropped on the page: walk them with the File System entries API.
  function readEntry(entry, prefix, out) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((file) => { out.push({ file, path: prefix + entry.name }); resolve(); },
          () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const next = () => reader.readEntries(async (batch) => {
          if (!batch.length) {
            for (const e of all) await readEntry(e, prefix + entry.name + "/", out);
            resolve();
          } else { all.push(...batch); next(); }
        }, () => resolve());
        next();
      } else resolve();
    });
  }

  function bindUpload() {
    const drop = $("#drop");
    if (!drop) return;
    $("#pick-files").addEventListener("change", (e) => fromInput(e.target));
    $("#pick-folder").addEventListener("change", (e) => fromInput(e.target));
    document.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    document.addEventListener("dragleave", () => drop.classList.remove("over"));
    document.addEventListener("drop", async (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const out = [];
      const entries = Array.from(e.dataTransfer.items || [])
        .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
      if (entries.length) {
        for (const entry of entries) await readEntry(entry, "", out);
      } else {
        for (const file of e.dataTransfer.files) out.push({ file, path: file.name });
      }
      if (out.length) addUploads(out);
    });
  }

  // --- live stats (Server-Sent Events) ----------------------------------------------------
  const samples = []; // [t, bytes/s out, bytes/s in]
  const KEEP = 180; // three minutes at one event a second
  let last = null;

  function draw() {
    const canvas = $("#chart");
    if (!canvas || !canvas.getContext) return;
    const w = (canvas.width = canvas.clientWidth || 600);
    const h = (canvas.height = 120);
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const peak = Math.max(1, ...samples.map((s) => Math.max(s[1], s[2])));
    [[1, style.getPropertyValue("--bar")], [2, style.getPropertyValue("--ok")]].forEach(
      ([k, color]) => {
        ctx.strokeStyle = color.trim() || "#2f6fdf";
        ctx.lineWidth = 2;
        ctx.beginPath();
        samples.forEach((s, i) => {
          const x = w - ((samples.length - 1 - i) / (KEEP - 1)) * w;  // newest at the right
          const y = h - 4 - (s[k] / peak) * (h - 8);
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.stroke();
      });
  }

  function onEvent(ev) {
    const d = JSON.parse(ev.data);
    if (last && d.t > last.t) {
      const dt = d.t - last.t;
      samples.push([d.t, (d.sent - last.sent) / dt, (d.received - last.received) / dt]);
      while (samples.length > KEEP) samples.shift();
      const s = samples[samples.length - 1];
      $("#rate").textContent = "out " + humanSize(Math.round(s[1])) + "/s, in " +
        humanSize(Math.round(s[2])) + "/s";
    }
    last = d;
    $("#active").textContent = String(d.active);
    $("#swarms").textContent = String(d.swarms);
    const top = $("#top-downloads");
    top.replaceChildren(...Object.entries(d.downloads).map(([name, n]) => {
      const li = document.createElement("li");
      li.textContent = name + " — " + n + (n === 1 ? " download" : " downloads");
      return li;
    }));
    $$("td.swarm").forEach((td) => {
      const n = d.downloads[td.dataset.swarm];
      const span = td.querySelector(".downloads");
      if (span && n !== undefined) span.textContent = n + (n === 1 ? " download" : " downloads");
    });
    draw();
  }

  function bindLive() {
    const live = $("#live");
    if (!live || !window.EventSource) return;
    let source = null;
    live.addEventListener("toggle", () => {
      if (live.open && !source) {
        source = new EventSource("/events");
        source.addEventListener("message", onEvent);
      } else if (!live.open && source) {
        source.close();
        source = null;
      }
    });
  }

  if (table) {
    bindSort();
    bindRows(document);
    $("#search").addEventListener("input", applySearch);
    bindUpload();
    bindLive();
    document.body.dataset.ready = "1";
  }
})();
