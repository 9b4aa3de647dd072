/**
 * The r2d1 Dagger module's API as Dagger sees it, without an engine: the TypeScript SDK's own
 * introspector (`scan` in @dagger.io/dagger, the code the engine runs to register a module) reads
 * dagger/src offline, and `dagger call` examples are parsed out of text (README, doc comments) so a
 * test can hold them against the signatures.
 */
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './cli.js';

export interface TypeDefJson {
  kind: string;
  name?: string;
  typeDef?: TypeDefJson;
}

export interface ArgumentJson {
  name: string;
  description: string;
  type?: TypeDefJson;
  isOptional: boolean;
  isNullable: boolean;
  defaultValue?: unknown;
}

export interface FunctionJson {
  name: string;
  description: string;
  arguments: Record<string, ArgumentJson>;
  returnType?: TypeDefJson;
  /** The @func({ cache }) setting (not in the introspector's JSON: read off the object). */
  cache?: string;
}

export interface ObjectJson {
  name: string;
  description: string;
  methods: Record<string, FunctionJson>;
  properties: Record<string, { name: string; description: string; type?: TypeDefJson; isExposed: boolean }>;
}

export interface ModuleJson {
  name: string;
  description?: string;
  objects: Record<string, ObjectJson>;
}

export const MODULE_DIR = join(REPO_ROOT, 'dagger');
const SDK_DIST = join(REPO_ROOT, 'node_modules', '@dagger.io', 'dagger', 'dist', 'src');

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await tsFiles(path)));
    else if (/\.m?ts$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

/**
 * Runs the SDK's introspector on dagger/src as the engine does (every .ts file under src/, plus the
 * generated API client, module name from dagger.json), without loading the module. In the engine
 * the client is the generated client.gen.ts; here the SDK's published declarations of the same core
 * types (Container, Directory, Secret, ...) stand in: the introspector looks those up by name in a
 * file called client.gen.ts.
 */
export async function scanModule(moduleName: string): Promise<ModuleJson> {
  const scratch = await mkdtemp(join(tmpdir(), 'r2d1-dagger-scan-'));
  try {
    const client = join(scratch, 'client.gen.ts');
    await copyFile(join(SDK_DIST, 'api', 'client.gen.d.ts'), client);
    const files = [...(await tsFiles(join(MODULE_DIR, 'src'))), client];
    const { scan } = (await import(pathToFileURL(join(SDK_DIST, 'module', 'introspector', 'index.js')).href)) as {
      scan: (files: string[], moduleName?: string, loadModule?: boolean) => Promise<{ objects: Record<string, { methods: Record<string, { cache?: string }> }> }>;
    };
    const scanned = await scan(files, moduleName, false);
    const json = JSON.parse(JSON.stringify(scanned)) as ModuleJson;
    for (const [objectName, object] of Object.entries(json.objects)) {
      for (const [fnName, fn] of Object.entries(object.methods)) fn.cache = scanned.objects[objectName]?.methods[fnName]?.cache;
    }
    return json;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** camelCase → the kebab-case `dagger call` uses for functions, arguments and fields. */
export const kebab = (name: string): string => name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

export interface DaggerCall {
  /** The whole command as written (continuations joined). */
  text: string;
  fn: string;
  /** `--name=value` (or a bare boolean `--name`) given to the function. */
  flags: Map<string, string | true>;
  /** What follows the function's flags: chained fields and functions of the result. */
  chain: string[];
}

/**
 * Every `dagger call FN --flag=value ... chained` command in `text` (README code blocks, doc
 * comments). Backslash-continued lines are joined; a leading `*` (JSDoc) is ignored.
 */
export function daggerCalls(text: string): DaggerCall[] {
  const joined = text.replace(/\\\r?\n[\s*]*/g, ' ');
  const calls: DaggerCall[] = [];
  for (const line of joined.split(/\r?\n/)) {
    const match = /^[\s*$]*dagger(?:\s+-m\s+\S+)?\s+call\s+(.+)$/.exec(line);
    if (!match) continue;
    const tokens = match[1]!.trim().split(/\s+/);
    const fn = tokens.shift()!;
    const flags = new Map<string, string | true>();
    while (tokens[0]?.startsWith('--')) {
      const token = tokens.shift()!.slice(2);
      const eq = token.indexOf('=');
      // Examples are written `--name=value`; a bare `--name` is a boolean flag.
      if (eq >= 0) flags.set(token.slice(0, eq), token.slice(eq + 1));
      else flags.set(token, true);
    }
    calls.push({ text: line.trim(), fn, flags, chain: tokens });
  }
  return calls;
}
