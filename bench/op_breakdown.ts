// Per-op-type GPU time of one profiled run (gpu.startProfiling(): one timestamped pass per dispatch), grouped from the
// dispatch labels: layers label their dispatches with their module path, kernels called directly '<kernel>.<entry>'.
import type { Gpu } from '../runtime/device.js';

export interface OpGroup {
  group: string;
  ms: number;
  /** Part of ms spent in backward dispatches. */
  backward_ms: number;
  dispatches: number;
}
export interface Profile {
  /** Sum of the timed dispatches (ms): GPU busy time, without the gaps between passes. */
  gpu_ms: number;
  dispatches: number;
  groups: OpGroup[];
  /** The costliest dispatch kinds (labels with repeat indices folded, see labelKind). */
  top: { label: string; ms: number; dispatches: number }[];
  /** The costliest roles: labels with every block / level index dropped (see labelRole). */
  roles: { label: string; ms: number; dispatches: number }[];
}

const LINEAR_MODULE = /(?:^|\.)(?:to_[qkv]|to_out\.\d+|ff\.net\.\d+(?:\.proj)?|proj_in|proj_out|time_emb_proj|linear_\d+)$/;
const CONV_MODULE = /(?:^|\.)(?:conv\d*|conv_shortcut|conv_in|conv_out)$/;

/**
 * Op type of a dispatch label. Layers label their dispatches with their module path (plus '.h' for the LoRA down
 * projection and ' backward.<what>' in the backward); kernels called directly use '<kernel>.<entry>'.
 */
export function opType(label: string): string {
  const [path] = label.split(' backward');
  const module = path.replace(/\.(h|forward)$/, '');
  if (/\.attn\d$/.test(module)) return 'attention';
  if (LINEAR_MODULE.test(module)) return 'linear (matmul)';
  if (CONV_MODULE.test(module)) return 'conv2d';
  const l = label.toLowerCase();
  const rules: [RegExp, string][] = [
    [/^conv2d\.pack_weight/, 'conv2d weight packing'],
    [/^conv2d|^lora_conv/, 'conv2d'],
    [/^matmul|^lora_linear|^lora_matmul/, 'linear (matmul)'],
    [/attention|softmax/, 'attention'],
    [/group_norm/, 'group_norm'],
    [/layer_norm/, 'layer_norm'],
    [/geglu/, 'geglu'],
    [/^(unary|binary)/, 'elementwise'],
    [/^(sum|mean|reduce)|l2/, 'reduce'],
    [/transpose/, 'transpose'],
    [/^resample/, 'resample / concat'],
    [/timestep/, 'timestep embedding'],
    [/adamw|clip/, 'adamw'],
    [/^random/, 'random fill'],
  ];
  for (const [re, g] of rules) if (re.test(l)) return g;
  return l.split(/[.([{ ]/)[0] || 'other';
}

/** Whether a dispatch belongs to a backward pass (layer ' backward.*', kernel '*_grad' / 'bwd' / '*_backward'). */
export function isBackward(label: string): boolean {
  return / backward/.test(label) || /_grad|bwd|_backward|^sumTo/.test(label);
}

/** Label with the repeat indices folded (levels kept): 'up_blocks.1.attentions.#.transformer_blocks.#.attn1.forward'. */
export function labelKind(label: string): string {
  return label.replace(/\b(attentions|transformer_blocks|resnets)\.\d+/g, '$1.#').replace(/_vec\d+$/, '');
}

/** Label with the module's place dropped: 'ff.net.0.proj backward.g', 'attn1.forward', 'conv1'. */
export function labelRole(label: string): string {
  return label.replace(/^(?:(?:down|up)_blocks\.\d+\.|mid_block\.|(?:attentions|transformer_blocks|resnets|upsamplers|downsamplers)\.\d+\.)+/, '');
}

export function summarize(times: { label: string; ms: number }[]): Profile {
  const groups = new Map<string, OpGroup>();
  const kinds = new Map<string, { label: string; ms: number; dispatches: number }>();
  const roles = new Map<string, { label: string; ms: number; dispatches: number }>();
  let total = 0;
  for (const t of times) {
    const role = labelRole(t.label).replace(/_vec\d+$/, '');
    const r = roles.get(role) ?? { label: role, ms: 0, dispatches: 0 };
    r.ms += t.ms;
    r.dispatches++;
    roles.set(role, r);
    total += t.ms;
    const g = opType(t.label);
    const e = groups.get(g) ?? { group: g, ms: 0, backward_ms: 0, dispatches: 0 };
    e.ms += t.ms;
    if (isBackward(t.label)) e.backward_ms += t.ms;
    e.dispatches++;
    groups.set(g, e);
    const kind = labelKind(t.label);
    const k = kinds.get(kind) ?? { label: kind, ms: 0, dispatches: 0 };
    k.ms += t.ms;
    k.dispatches++;
    kinds.set(kind, k);
  }
  return {
    gpu_ms: total,
    dispatches: times.length,
    groups: [...groups.values()].sort((a, b) => b.ms - a.ms),
    top: [...kinds.values()].sort((a, b) => b.ms - a.ms).slice(0, 20),
    roles: [...roles.values()].sort((a, b) => b.ms - a.ms).slice(0, 40),
  };
}

/** One more run of `run` under timestamp queries, summarized; undefined (and a note) on a device without them. */
export async function profileRun(gpu: Gpu, mode: string, run: () => Promise<void>, log: (s: string) => void): Promise<Profile | undefined> {
  if (!gpu.hasTimestamps) {
    log(`${mode}: no 'timestamp-query' on this device: no per-op breakdown`);
    return undefined;
  }
  const prof = gpu.startProfiling();
  let profile: Profile;
  try {
    await prof.collect();
    await run();
    profile = summarize(await prof.collect());
  } finally {
    gpu.stopProfiling();
  }
  log(`${mode}: profiled ${profile.dispatches} dispatches, ${profile.gpu_ms.toFixed(1)} ms of GPU time`);
  return profile;
}
