// The demo page (web/index.html, served by `npm run serve`): adapter info, features and limits; selected kernels vs
// their float64 CPU references (max error, time); the SDXL TCD pipeline (prompt, steps, γ, seed) on a model folder
// from this server or picked from disk, drawing the decoded image. Bundled from the sources
// (scripts/build-browser.mjs); the published entry is checked by the browser test's consumer page.
// ?autorun=sampler | kernels | all runs panels on load (the browser test uses it); ?prompt=…&steps=…&eta=…&seed=…
// &size=… preset the sampler; body[data-*] reports state.
import { Gpu, GpuError, type ProgressFn, type Stage } from '../src/index.js';
import { KERNEL_CASES, runCase } from './kernel_cases.js';
import { type LoadedModel, type SampleOptions, drawImage, loadFromFiles, loadFromServer, sample } from './sampler.js';

const $ = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const el = (tag: string, text = '', cls = '') => {
  const e = document.createElement(tag);
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
};
const fmtMs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const errText = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Parity bound for the table's ✓ (max|got − want| / max|want|, float32 kernels vs float64 references). */
const REL_TOL = 1e-4;
/** The tiny SDXL-shaped folder web/server.mjs generates and serves. */
const TINY_MODEL_URL = '/out/tiny-sdxl/';

function unavailable(reason: string): void {
  document.body.dataset.webgpu = 'unavailable';
  const s = $('#status');
  s.className = 'error';
  s.textContent = `WebGPU is not available: ${reason}`;
  document.querySelectorAll<HTMLButtonElement | HTMLInputElement>('button, input').forEach((b) => (b.disabled = true));
}

async function createGpu(): Promise<Gpu | undefined> {
  if (!window.isSecureContext) {
    unavailable(`this page is not a secure context (${location.origin}); open it over https or from http://127.0.0.1 / http://localhost.`);
    return undefined;
  }
  if (!('gpu' in navigator)) {
    unavailable('this browser has no navigator.gpu. Use a browser with WebGPU (Chrome / Edge 113+, Safari 26+, Firefox 141+ on Windows).');
    return undefined;
  }
  try {
    return await Gpu.create();
  } catch (e) {
    if (e instanceof GpuError && /no WebGPU adapter/.test(e.message)) {
      unavailable(
        'the browser has WebGPU but offers no adapter (no usable GPU, or WebGPU is blocklisted here). ' +
          'Chromium on a machine without a GPU: start it with --enable-unsafe-webgpu (software adapter: SwiftShader).',
      );
    } else unavailable(`creating the device failed: ${errText(e)}`);
    return undefined;
  }
}

function showAdapter(gpu: Gpu): void {
  const s = gpu.summary();
  const info = gpu.adapterInfo as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const box = $('#adapter');
  box.replaceChildren();
  const dl = el('dl');
  const row = (k: string, v: string) => dl.append(el('dt', k), el('dd', v || '—'));
  row('vendor', s.vendor);
  row('architecture', s.architecture);
  row('device / description', [s.device, s.description].filter(Boolean).join(' / '));
  row('fallback (software) adapter', s.isFallbackAdapter ? 'yes' : 'no');
  if (info.subgroupMinSize !== undefined) row('subgroup size', `${info.subgroupMinSize}–${info.subgroupMaxSize}`);
  row('device features', s.features.join(', '));
  row('adapter features', [...(gpu.adapter?.features ?? [])].sort().join(', '));
  box.append(dl);
  const table = el('table');
  table.append(el('caption', 'device limits (requested at the adapter maximum)'));
  for (const [k, v] of Object.entries(s.limits)) {
    const tr = el('tr');
    tr.append(el('td', k), el('td', v.toLocaleString('en-US'), 'num'));
    table.append(tr);
  }
  box.append(table);
}

function buildKernelTable(): HTMLTableRowElement[] {
  const body = $('#kernel-rows');
  return KERNEL_CASES.map((c) => {
    const tr = el('tr') as HTMLTableRowElement;
    tr.append(el('td', c.name), el('td', c.shape), el('td', '', 'num'), el('td', '', 'num'), el('td', '', 'num'), el('td', '', 'num'), el('td', '', 'num'), el('td'));
    body.append(tr);
    return tr;
  });
}

async function runKernels(gpu: Gpu, rows: HTMLTableRowElement[]): Promise<boolean> {
  let allOk = true;
  document.body.dataset.kernels = 'running';
  for (let i = 0; i < KERNEL_CASES.length; i++) {
    const cells = rows[i].cells;
    cells[7].textContent = 'running…';
    await new Promise((r) => setTimeout(r, 0)); // let the row repaint
    try {
      const r = await runCase(gpu, KERNEL_CASES[i]);
      const ok = r.relMax <= REL_TOL;
      allOk &&= ok;
      cells[2].textContent = r.maxAbs.toExponential(2);
      cells[3].textContent = r.relMax.toExponential(2);
      cells[4].textContent = fmtMs(r.firstMs);
      cells[5].textContent = fmtMs(r.warmMs);
      cells[6].textContent = r.gpuMs === undefined ? 'n/a' : fmtMs(r.gpuMs);
      cells[7].textContent = ok ? `✓ ≤ ${REL_TOL}` : `✗ > ${REL_TOL}`;
      rows[i].className = ok ? 'ok' : 'bad';
    } catch (e) {
      allOk = false;
      cells[7].textContent = errText(e);
      rows[i].className = 'bad';
    }
  }
  document.body.dataset.kernels = allOk ? 'done' : 'error';
  return allOk;
}

/** Sampler presets from the URL (?prompt=…&steps=2&eta=0.3&seed=5&size=64), so a run can be linked. */
function applyUrlPresets(params: URLSearchParams): void {
  for (const id of ['prompt', 'steps', 'eta', 'seed', 'size']) {
    const v = params.get(id);
    if (v !== null) $<HTMLInputElement>(`#${id}`).value = v;
  }
}

function samplerUi(gpu: Gpu) {
  let model: LoadedModel | undefined;
  let busy = false;
  const status = $('#sampler-status');
  const say = (s: string) => (status.textContent = s);
  const prompt = $<HTMLInputElement>('#prompt');
  const steps = $<HTMLInputElement>('#steps');
  const eta = $<HTMLInputElement>('#eta');
  const seed = $<HTMLInputElement>('#seed');
  const size = $<HTMLSelectElement>('#size');
  const bar = $<HTMLProgressElement>('#sample-progress');
  const stage = $('#sample-stage');
  const sync = () => {
    $('#steps-out').textContent = steps.value;
    $('#eta-out').textContent = Number(eta.value).toFixed(2);
  };
  steps.oninput = eta.oninput = sync;
  sync();
  const STAGE_NAMES: Record<Stage, string> = { load: 'loading', text: 'text encoders', denoise: 'denoising', decode: 'VAE decode' };
  const onProgress: ProgressFn = (e) => {
    bar.max = Math.max(1, e.total);
    bar.value = e.done;
    stage.textContent = `${STAGE_NAMES[e.stage]} ${e.done}/${e.total}${e.detail ? ` (${e.detail})` : ''}`;
  };
  const showTimings = (rows: [string, number][]) => {
    const body = $('#timing-rows');
    body.replaceChildren();
    for (const [k, ms] of rows) {
      const tr = el('tr');
      tr.append(el('td', k), el('td', fmtMs(ms), 'num'));
      body.append(tr);
    }
  };

  const setModel = (m: LoadedModel) => {
    model?.pipe.dispose();
    model = m;
    $('#model-name').textContent = `${m.name}: ${m.params.toLocaleString('en-US')} parameters, loaded in ${fmtMs(m.pipe.loadMs)}`;
  };
  const guarded = async (what: () => Promise<void>) => {
    if (busy) return;
    busy = true;
    document.body.dataset.sampler = 'running';
    try {
      await what();
      document.body.dataset.sampler = 'done';
    } catch (e) {
      document.body.dataset.sampler = 'error';
      say(errText(e));
    } finally {
      busy = false;
    }
  };
  const loadServer = async () => {
    say(`loading ${TINY_MODEL_URL} …`);
    setModel(await loadFromServer(gpu, TINY_MODEL_URL, onProgress));
    say(`loaded ${model!.name}`);
  };
  const generate = async () => {
    if (!model) await loadServer();
    const m = model!;
    const o: SampleOptions = { prompt: prompt.value, steps: Number(steps.value), eta: Number(eta.value), seed: Number(seed.value), size: Number(size.value) };
    say(`sampling "${o.prompt}": ${o.steps} TCD steps, γ = ${o.eta.toFixed(2)}, seed ${o.seed}, ${o.size}×${o.size} …`);
    const r = await sample(m, o, onProgress);
    const img = r.images[0];
    drawImage($<HTMLCanvasElement>('#sample-canvas'), img);
    const t = r.timings;
    showTimings([
      ['load (once per model)', m.pipe.loadMs],
      ['text encoders', t.textEncodeMs],
      ...t.stepMs.map((ms, i): [string, number] => [`step ${i + 1} (t=${r.timesteps[i]})`, ms]),
      ['VAE decode', t.decodeMs],
      ['generate total', t.totalMs],
    ]);
    // For the browser test: the pipeline's own pixels and settings next to the canvas.
    (window as unknown as { __tcdSample: unknown }).__tcdSample = { ...o, width: img.width, height: img.height, channels: img.channels, data: Array.from(img.data), timesteps: r.timesteps, timings: t };
    document.body.dataset.samplerMode = 'TcdSdxlPipeline (text encoders + UNet/TCD + VAE)';
    say(
      `${m.name}: "${o.prompt}", ${r.scheduler} ${r.timesteps.length} steps [${r.timesteps.join(', ')}], γ = ${r.eta.toFixed(2)}, seed ${o.seed}, ` +
        `${img.width}×${img.height} in ${fmtMs(t.totalMs)} (the first run includes pipeline compilation).\n${gpu.describe()}`,
    );
  };
  $('#load-server').onclick = () => guarded(loadServer);
  $<HTMLInputElement>('#model-files').onchange = (ev) =>
    guarded(async () => {
      const files = (ev.target as HTMLInputElement).files;
      if (!files?.length) return;
      say(`loading the picked folder (${files.length} files) …`);
      setModel(await loadFromFiles(gpu, files, onProgress));
      say(`loaded ${model!.name}; press Sample`);
    });
  $('#sample').onclick = () => guarded(generate);
  return { generate: () => guarded(generate) };
}

async function main(): Promise<void> {
  const gpu = await createGpu();
  if (!gpu) return;
  document.body.dataset.webgpu = 'ready';
  const s = $('#status');
  s.className = 'ok';
  s.textContent = `WebGPU ready: ${gpu.describe()}`;
  showAdapter(gpu);
  const rows = buildKernelTable();
  $('#run-kernels').onclick = async (ev) => {
    const b = ev.target as HTMLButtonElement;
    b.disabled = true;
    await runKernels(gpu, rows);
    b.disabled = false;
  };
  const params = new URLSearchParams(location.search);
  applyUrlPresets(params);
  const sampler = samplerUi(gpu);
  const auto = params.get('autorun');
  if (auto === 'kernels' || auto === 'all') await runKernels(gpu, rows);
  if (auto === 'sampler' || auto === 'all') await sampler.generate();
}

main().catch((e) => {
  const s = $('#status');
  s.className = 'error';
  s.textContent = `demo failed: ${errText(e)}`;
  document.body.dataset.webgpu ??= 'error';
});
