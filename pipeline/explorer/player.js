// The player both explorer pages share, written into each page with it (a page opened from disk
// may load no other file): one AudioContext; each sound decoded once, from the page's base64
// where it is embedded, else fetched over `soundspace serve`; a bounded cache; voices that fade
// in and out, so that nothing clicks. `sounds` maps a key to a WAV's base64 (none: not
// embedded), `key` gives a sound's key from its path, `onLoading` hears the loading count change.
function soundspacePlayer(sounds, key, onLoading) {
  const CACHE = 512;  // decoded sounds kept, the least recently used out first
  const player = { context: null, cache: new Map(), loading: 0, fetched: [],
                   embedded: Boolean(sounds) && Object.keys(sounds).length > 0 };

  // The context, made on first use (browsers start sound only after a click or key).
  player.audio = function () {
    if (!player.context) player.context = new (window.AudioContext || window.webkitAudioContext)();
    if (player.context.state === "suspended") player.context.resume();
    return player.context;
  };
  function bytes(path) {
    if (player.embedded) {
      const text = atob(sounds[key(path)]), out = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
      return Promise.resolve(out.buffer);
    }
    if (location.protocol === "file:") return Promise.reject(new Error("use soundspace serve"));
    player.fetched.push(path);
    return get(path).then(r => r.arrayBuffer());
  }
  function get(path) {  // over `soundspace serve`
    return fetch(path).then(r => {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r;
    });
  }
  // The decoded sound at `path` (a promise); a failed one is forgotten, so it is tried again.
  player.load = function (path) {
    if (player.cache.has(path)) {
      const hit = player.cache.get(path);
      player.cache.delete(path);
      player.cache.set(path, hit);
      return hit;
    }
    const context = player.audio();
    player.loading += 1;
    onLoading();
    const sound = bytes(path).then(b => context.decodeAudioData(b)).finally(() => {
      player.loading -= 1;
      onLoading();
    });
    sound.catch(() => player.cache.delete(path));
    player.cache.set(path, sound);
    while (player.cache.size > CACHE) player.cache.delete(player.cache.keys().next().value);
    return sound;
  };
  // Play `buffer` now, rising to `level` over `attack` seconds, at `rate`, looping the part
  // `loop` ([start, end] as fractions) if given; returns the voice.
  player.start = function (buffer, level, attack, rate = 1, loop = null) {
    const context = player.audio(), now = context.currentTime;
    const source = context.createBufferSource(), gain = context.createGain();
    source.buffer = buffer;
    source.playbackRate.value = rate;
    if (loop) {
      source.loop = true;
      source.loopStart = loop[0] * buffer.duration;
      source.loopEnd = loop[1] * buffer.duration;
    }
    gain.gain.setValueAtTime(0, now);
    gain.gain.linearRampToValueAtTime(level, now + attack);
    source.connect(gain).connect(context.destination);
    source.start(now);
    return { source, gain, level, attack, begun: now };
  };
  // Fade a voice out over `release` seconds, `after` seconds from now, and stop it. Up to then it
  // stays on its attack's line, computed here: the gain's `value` is only what the audio thread
  // last rendered, stale for a voice started a moment ago.
  player.release = function (voice, release, after = 0) {
    const from = player.audio().currentTime + after, gain = voice.gain.gain;
    gain.cancelScheduledValues(from);
    gain.linearRampToValueAtTime(voice.level * Math.min(1, (from - voice.begun) / voice.attack), from);
    gain.linearRampToValueAtTime(0, from + release);
    voice.source.stop(from + release + 0.01);
  };
  // Opened from disk with its sounds left out of the page: say how to serve it.
  player.serveHint = function (what, data) {
    if (player.embedded || location.protocol !== "file:") return;
    const hint = document.getElementById("serve-hint");
    hint.style.display = "block";
    hint.textContent = "This " + what + " holds " + (data.soundBytes / 1e6).toFixed(1) +
      " MB of sound, more than a page opened from disk can carry (" +
      (data.embedLimit / 1e6).toFixed(0) + " MB). Run  soundspace serve " + data.name +
      "  in its parent folder and open the address it prints.";
  };
  // A page served while its space or library is being made: every POLL ms, what `live.json`
  // (with `query`) says of each cell is handed to `show`; when the run says complete, the page
  // reloads and becomes the finished one. `player.live` holds the last answer.
  player.live = null;
  player.follow = function (query, show) {
    const POLL = 1500;
    let timer = null;
    const poll = () => {
      clearTimeout(timer);
      get("live.json" + query()).then(r => r.json()).then(progress => {
        if (progress.status === "complete") { location.reload(); return; }
        player.live = progress;
        show(progress);
      }).catch(error => console.warn("live.json: " + error.message))
        .finally(() => { timer = setTimeout(poll, POLL); });
    };
    poll();
    return poll;  // call it to poll now (another pad chosen)
  };
  // What a cell's state says, in a few words: "made", "1.2 of 4.0 s made", "waiting".
  player.describeLive = function (cell) {
    if (!cell || cell.state === "waiting") return "waiting to be made";
    if (cell.state === "finished") return "made";
    return cell.seconds.toFixed(1) + " of " + cell.of.toFixed(1) + " s made (playing what is made so far)";
  };
  // The status line of a page in the making: counts of each state, and what a stopped run needs.
  player.liveSummary = function (progress) {
    const states = Object.values(progress.cells || {});
    const count = s => states.filter(c => c.state === s).length;
    const said = { running: "being made", stopped: "stopped (its run was killed)", incomplete: "incomplete" };
    return (said[progress.status] || progress.status) + ": " + count("finished") + " of " +
      states.length + " cells made, " + count("making") + " in progress" +
      (progress.status === "running" ? "" : "; run the same soundspace generate command to finish it");
  };
  return player;
}
