// The buyer's page: counts down the time shown in every .countdown (the
// page works without this; it then refreshes on its own <meta> alone), and
// copies the pass. It reads only the page and changes text, never markup.
'use strict';
(() => {
  const start = performance.now();

  function clock(secs) {
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = secs % 60;
    const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
    return (h > 0 ? h + ':' : '') + mm + ':' + String(s).padStart(2, '0');
  }

  // The seconds come from the server, counted from when the page arrived:
  // the buyer's own clock may be wrong by minutes.
  const countdowns = [...document.querySelectorAll('.countdown[data-seconds]')];
  let reloading = false;
  function tick() {
    const elapsed = Math.floor((performance.now() - start) / 1000);
    for (const el of countdowns) {
      const left = Math.max(0, Number(el.dataset.seconds) - elapsed);
      el.textContent = clock(left);
      if (left === 0 && el.hasAttribute('data-reload') && !reloading) {
        reloading = true;
        setTimeout(() => location.reload(), 1000);
      }
    }
  }
  if (countdowns.length > 0) setInterval(tick, 250);

  const copy = document.getElementById('copy');
  const pass = document.getElementById('pass');
  const copied = document.getElementById('copied');
  if (copy && pass) {
    copy.hidden = false;
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(pass.value);
      } catch {
        pass.select();
        document.execCommand('copy');
      }
      copied.textContent = 'Copied.';
    });
  }
})();
