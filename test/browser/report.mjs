// results.html for npm run test:browser: adapter, limits, one row per test (same names as under vitest), demo checks
// and the screenshot. Written atomically next to results.json.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

export function writeResultsHtml(r, outDir) {
  const a = r.adapter;
  const rows = r.tests
    .map((t) => {
      const detail = [t.skipReason && `skipped: ${t.skipReason}`, t.error, t.logs?.length ? t.logs.join('\n') : '']
        .filter(Boolean)
        .join('\n\n');
      return `<tr class="${t.state}"><td>${esc(t.file)}.test.ts</td><td>${esc(t.fullName)}</td><td>${t.state}</td>` +
        `<td class=num>${t.state === 'skipped' ? '' : (t.durationMs / 1000).toFixed(2) + ' s'}</td>` +
        `<td>${detail ? `<details${t.state === 'failed' ? ' open' : ''}><summary>${t.state === 'failed' ? 'error' : 'output'}</summary><pre>${esc(detail)}</pre></details>` : ''}</td></tr>`;
    })
    .join('\n');
  const checks = r.checks
    .map((c) => `<tr class="${c.ok ? 'passed' : 'failed'}"><td colspan=2>${esc(c.name)}</td><td>${c.ok ? 'passed' : 'failed'}</td><td></td>` +
      `<td><pre>${esc([...(c.problems ?? []), c.info ? JSON.stringify(c.info, null, 1) : ''].join('\n'))}</pre></td></tr>`)
    .join('\n');
  const shot = r.checks.find((c) => c.screenshot);
  const limits = a ? Object.entries(a.limits).map(([k, v]) => `<tr><td>${esc(k)}</td><td class=num>${v}</td></tr>`).join('') : '';
  const html = `<!doctype html><meta charset=utf-8><link rel=icon href="data:,"><title>tcd-webgpu browser tests</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
.passed td:nth-child(3){color:#070}.failed td:nth-child(3){color:#b00;font-weight:bold}.skipped td:nth-child(3){color:#888}.num{text-align:right}
pre{margin:0;white-space:pre-wrap;max-width:70em;font-size:12px}img{max-width:100%;border:1px solid #ccc}</style>
<h1>tcd-webgpu browser tests: ${r.ok ? 'passed' : 'FAILED'}</h1>
<p>${r.counts.passed} passed, ${r.counts.failed} failed, ${r.counts.skipped} skipped; ${r.checks.filter((c) => c.ok).length}/${r.checks.length} demo checks;
${(r.durationMs / 1000).toFixed(1)} s; ${esc(r.startedAt)}; Chromium ${esc(r.chromium?.version)} (${esc(r.chromium?.args?.join(' '))})</p>
${r.fatal ? `<pre class=failed>${esc(r.fatal)}</pre>` : ''}
<h2>Adapter</h2><p>${esc(r.adapterDescribe)}${a?.isFallbackAdapter ? ' (fallback adapter)' : ''}</p>
${a ? `<p>features: ${esc(a.features.join(', '))}</p><table>${limits}</table>` : ''}
<h2>Tests</h2><table><tr><th>file</th><th>test</th><th>state</th><th>time</th><th></th></tr>
${rows}
${checks}</table>
${shot ? `<h2>Demo page screenshot</h2><img src="${esc(shot.screenshot)}" alt="demo page">` : ''}
`;
  const path = join(outDir, 'results.html');
  writeFileSync(`${path}.tmp`, html);
  renameSync(`${path}.tmp`, path);
  return path;
}
