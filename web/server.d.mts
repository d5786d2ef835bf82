// Types of web/server.mjs for the TypeScript tests that start it.
export declare const TINY_SDXL_DIR: string;
export declare const TINY_SDXL_URL: string;
export declare function startServer(opts?: { port?: number; host?: string; log?: boolean }): Promise<{ url: string; close(): Promise<void> }>;
export declare function ensureTinySdxl(opts?: { log?: (line: string) => void; make?: (dir: string) => Promise<unknown> }): Promise<string>;
