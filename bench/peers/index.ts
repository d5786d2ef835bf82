// Peer baselines on our matmul shapes (`npm run bench -- --peers`): TF.js WebGPU and gpu.js. Each peer is a dynamic
// import of an optional (dev) package: when one is missing, or cannot run here, a line says why and the run goes on.
import type { Gpu } from '../../runtime/device.js';
import type { PeerOptions } from './common.js';
import { gpujsPeer } from './gpujs.js';
import type { MatmulShape } from './shapes.js';
import { tfjsPeer, tfjsShutdown } from './tfjs.js';
import type { Row } from '../report.js';

export { peerShapes } from './shapes.js';

export const PEERS = ['tfjs', 'gpujs'] as const;
export type PeerName = (typeof PEERS)[number];

export async function runPeers(
  gpu: Gpu,
  shapes: MatmulShape[],
  which: readonly PeerName[],
  opts: PeerOptions,
): Promise<{ rows: Row[]; unavailable: string[] }> {
  const rows: Row[] = [];
  const unavailable: string[] = [];
  for (const name of which) {
    try {
      const r = name === 'tfjs' ? await tfjsPeer(gpu, shapes, opts) : await gpujsPeer(gpu, shapes, opts);
      rows.push(...r.rows);
      if (r.unavailable) {
        unavailable.push(r.unavailable);
        opts.log(r.unavailable);
      }
    } catch (e) {
      const line = `${name}: failed (${(e as Error).message.split('\n')[0]})`;
      unavailable.push(line);
      opts.log(line);
    }
  }
  return { rows, unavailable };
}

export function shutdownPeers(): void {
  tfjsShutdown();
}
