// A live WS-fMP4 player for Media Source Extensions (no dependencies, no build step).
//
// The hub's WS-fMP4 protocol (docs/live-video.md): a JSON text frame
// {"type": "init", "codecs": "...", "mime": "..."} first, then binary frames: the init
// segment, then media fragments starting on a keyframe. Live means staying near the
// buffered edge: when playback falls behind (a stalled tab, a slow decoder) the player
// jumps forward instead of drifting, and it trims what it has played so the buffer stays
// small.

const MAX_LAG_S = 1.0;      // jump to the live edge when further behind than this
const EDGE_MARGIN_S = 0.05; // where to land behind the edge
const KEEP_BEHIND_S = 10;   // buffer kept behind the play position

export class LivePlayer {
  constructor(video, url, onStatus = () => {}) {
    this.video = video;
    this.url = url;
    this.onStatus = onStatus;
    this.queue = [];
    this.stats = {
      startedAt: 0, openedAt: 0, firstFragmentAt: 0, firstFrameAt: 0,
      fragments: 0, bytes: 0, jumps: 0, error: "", closed: false, codecs: "",
    };
  }

  start() {
    this.stats.startedAt = performance.now();
    this.ws = new WebSocket(this.url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => { this.stats.openedAt = performance.now(); this.report("connected"); };
    this.ws.onmessage = (ev) => this.onMessage(ev.data);
    this.ws.onclose = (ev) => {
      this.stats.closed = true;
      this.report(`stream ended (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
    };
    this.ws.onerror = () => this.fail("WebSocket error");
    this.video.addEventListener("timeupdate", () => this.keepLive());
    const frameSeen = () => {
      if (!this.stats.firstFrameAt) this.stats.firstFrameAt = performance.now();
    };
    if (this.video.requestVideoFrameCallback) {
      this.video.requestVideoFrameCallback(frameSeen);
    } else {
      this.video.addEventListener("playing", frameSeen, { once: true });
    }
  }

  stop() {
    if (this.ws) this.ws.close();
  }

  onMessage(data) {
    if (typeof data === "string") {
      let msg;
      try { msg = JSON.parse(data); } catch { return this.fail("bad control message"); }
      if (msg.type === "init") return this.open(msg);
      if (msg.type === "error") return this.fail(msg.message || "stream error");
      return;
    }
    if (!this.source) return; // media before the init message: not ours to guess
    if (this.initSegmentSeen) {
      // The first binary frame is the init segment; media fragments follow it.
      if (!this.stats.firstFragmentAt) this.stats.firstFragmentAt = performance.now();
      this.stats.fragments += 1;
    }
    this.initSegmentSeen = true;
    this.stats.bytes += data.byteLength;
    this.queue.push(data);
    this.pump();
  }

  open(msg) {
    const mime = msg.mime || `video/mp4; codecs="${msg.codecs}"`;
    this.stats.codecs = msg.codecs || "";
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) {
      return this.fail(`this browser cannot play ${mime}`);
    }
    this.source = new MediaSource();
    this.video.src = URL.createObjectURL(this.source);
    this.source.addEventListener("sourceopen", () => {
      this.buffer = this.source.addSourceBuffer(mime);
      this.buffer.mode = "segments";
      this.buffer.addEventListener("updateend", () => { this.keepLive(); this.pump(); });
      this.pump();
    }, { once: true });
    this.report(`playing ${mime}`);
  }

  pump() {
    const buffer = this.buffer;
    if (!buffer || buffer.updating || this.queue.length === 0) return;
    try {
      buffer.appendBuffer(this.queue.shift());
    } catch (err) {
      if (err.name === "QuotaExceededError") { this.trim(0); return; }
      this.fail(`append failed: ${err.message}`);
    }
  }

  keepLive() {
    const v = this.video;
    const ranges = v.buffered;
    if (ranges.length === 0) return;
    const edge = ranges.end(ranges.length - 1);
    // A stream joined mid-way starts far from 0 (the camera's clock): the play position
    // must be moved into what is buffered, or nothing is ever shown.
    if (v.currentTime < ranges.start(0) || edge - v.currentTime > MAX_LAG_S) {
      v.currentTime = edge - EDGE_MARGIN_S;
      this.stats.jumps += 1;
    }
    this.trim(KEEP_BEHIND_S);
    if (v.paused) v.play().catch(() => {});
  }

  trim(keepBehind) {
    const b = this.buffer;
    if (!b || b.updating || b.buffered.length === 0) return;
    const start = b.buffered.start(0);
    const until = this.video.currentTime - keepBehind;
    if (until - start > 1) b.remove(start, until);
  }

  fail(message) {
    this.stats.error = message;
    this.report(`error: ${message}`);
    if (this.ws) this.ws.close();
  }

  report(text) {
    const s = this.stats;
    const ttff = s.firstFrameAt ? `${Math.round(s.firstFrameAt - s.startedAt)} ms` : "–";
    this.onStatus(`${text}\nfirst frame after ${ttff}; ${s.fragments} fragments, ${s.bytes} bytes`);
  }
}
