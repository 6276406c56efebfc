// The extension's own logic, kept free of the `vscode` module so that it can be
// unit-tested with node's test runner. extension.ts wires it to VS Code.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';

// ---------------------------------------------------------------------------
// Finding the `nixlayer` executable.

export type ExecutableResult =
  | { ok: true; path: string }
  | { ok: false; reason: 'not-found' | 'not-executable'; detail: string };

export type IsExecutable = (file: string) => 'ok' | 'missing' | 'not-executable';

export function defaultIsExecutable(file: string): 'ok' | 'missing' | 'not-executable' {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return 'not-executable';
    fs.accessSync(file, fs.constants.X_OK);
    return 'ok';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'not-executable';
  }
}

/** Expands `~`, `${workspaceFolder}`, `${userHome}` and `${env:NAME}` in a setting value. */
export function expandVariables(
  value: string,
  ctx: { workspaceFolder?: string; home?: string; env?: NodeJS.ProcessEnv },
): string {
  const home = ctx.home ?? os.homedir();
  const env = ctx.env ?? process.env;
  let v = value.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (m, name: string, envName?: string) => {
    if (name === 'workspaceFolder') return ctx.workspaceFolder ?? m;
    if (name === 'userHome') return home;
    return env[envName ?? ''] ?? '';
  });
  if (v === '~' || v.startsWith('~/')) v = home + v.slice(1);
  return v;
}

/**
 * Resolves the `nixlayer.path` setting: a bare name is looked up on PATH, a path
 * (absolute, or relative to the workspace folder) is used as it is.
 */
export function resolveExecutable(
  setting: string | undefined,
  opts: { envPath?: string; workspaceFolder?: string; home?: string; isExecutable?: IsExecutable } = {},
): ExecutableResult {
  const isExec = opts.isExecutable ?? defaultIsExecutable;
  const raw = (setting ?? '').trim() || 'nixlayer';
  const value = expandVariables(raw, { workspaceFolder: opts.workspaceFolder, home: opts.home });
  if (value.includes('/')) {
    const abs = path.isAbsolute(value) ? value : path.resolve(opts.workspaceFolder ?? process.cwd(), value);
    const st = isExec(abs);
    if (st === 'ok') return { ok: true, path: abs };
    return {
      ok: false,
      reason: st === 'missing' ? 'not-found' : 'not-executable',
      detail: st === 'missing' ? `${abs} does not exist` : `${abs} is not an executable file`,
    };
  }
  const dirs = (opts.envPath ?? process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== '');
  for (const dir of dirs) {
    const candidate = path.join(dir, value);
    if (isExec(candidate) === 'ok') return { ok: true, path: candidate };
  }
  return { ok: false, reason: 'not-found', detail: `"${value}" is not on PATH (${dirs.join(path.delimiter) || 'PATH is empty'})` };
}

// ---------------------------------------------------------------------------
// Messages shown when the server cannot be used. Each is shown once per
// configuration (see OnceGate), with what to do about it.

export function missingExecutableMessage(r: Extract<ExecutableResult, { ok: false }>): string {
  if (r.reason === 'not-executable') {
    return `nixlayer: cannot run the nixlayer language server: ${r.detail}. Point the "nixlayer.path" setting at the nixlayer executable.`;
  }
  return (
    `nixlayer: the nixlayer executable was not found: ${r.detail}. ` +
    `Install nixlayer (from its repository: go build -o bin/nixlayer ./cmd/nixlayer) and put it on PATH, ` +
    `or set "nixlayer.path" to its full path.`
  );
}

export function startFailedMessage(exe: string, detail: string): string {
  const d = detail.trim().replace(/\s+/g, ' ');
  return (
    `nixlayer: "${exe} lsp" failed to start${d ? `: ${d}` : ''}. ` +
    `Check that this nixlayer has the "lsp" command (nixlayer lsp --help), see the "nixlayer server" output, ` +
    `then run "nixlayer: Restart Language Server" or fix "nixlayer.path".`
  );
}

export function crashedMessage(exe: string, crashes: number): string {
  return (
    `nixlayer: the language server (${exe} lsp) stopped ${crashes} times and will not be restarted. ` +
    `See the "nixlayer server" output, then run "nixlayer: Restart Language Server".`
  );
}

/** Lets a message through once per key; reset() when the configuration changes. */
export class OnceGate {
  private readonly seen = new Set<string>();
  shouldShow(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
  reset(): void {
    this.seen.clear();
  }
}

/** Counts server crashes in a sliding window to decide whether to restart. */
export class RestartPolicy {
  private times: number[] = [];
  constructor(
    private readonly maxRestarts = 3,
    private readonly windowMs = 3 * 60 * 1000,
  ) {}
  /** Records a crash at `now`; returns true if the server should be restarted. */
  crashed(now: number): boolean {
    this.times = this.times.filter((t) => now - t < this.windowMs);
    this.times.push(now);
    return this.times.length <= this.maxRestarts;
  }
  get count(): number {
    return this.times.length;
  }
  reset(): void {
    this.times = [];
  }
}

// ---------------------------------------------------------------------------
// Settings passed to the server (initializationOptions and workspace/configuration
// section "nixlayer").

export interface Target {
  /** A flake reference (`.#hello`, `path:/src#hello`; a relative path: to the workspace folder). */
  flake?: string;
  /** A .nix file (relative: to the workspace folder). */
  file?: string;
  /** An attribute path in it (like -A); alone, it selects in the edited file. */
  attr?: string;
  /** A Nix expression (like -E), instead of file. */
  expr?: string;
  /** --arg NAME EXPR */
  args?: Record<string, string>;
  /** --argstr NAME STRING */
  argstrs?: Record<string, string>;
}

export interface ServerSettings {
  target?: Target;
  /** false in Restricted Mode: the server then evaluates and builds nothing. */
  trusted?: boolean;
}

function stringMap(v: unknown): Record<string, string> | undefined | 'invalid' {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) return 'invalid';
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x === 'string') out[k] = x;
    else if (typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
    else return 'invalid';
  }
  return Object.keys(out).length ? out : undefined;
}

/** Validates and resolves the `nixlayer.target` setting; relative files are resolved against the workspace folder. */
export function resolveTarget(
  raw: unknown,
  ctx: { workspaceFolder?: string; home?: string },
): { target?: Target; error?: string } {
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    return { error: 'nixlayer.target must be an object: {"file": "...", "attr": "..."} or {"expr": "..."}' };
  }
  const o = raw as Record<string, unknown>;
  const t: Target = {};
  for (const k of ['flake', 'file', 'attr', 'expr'] as const) {
    if (o[k] === undefined || o[k] === null || o[k] === '') continue;
    if (typeof o[k] !== 'string') return { error: `nixlayer.target.${k} must be a string` };
    t[k] = o[k] as string;
  }
  for (const k of ['args', 'argstrs'] as const) {
    const m = stringMap(o[k]);
    if (m === 'invalid') return { error: `nixlayer.target.${k} must map argument names to strings` };
    if (m) t[k] = m;
  }
  const unknown = Object.keys(o).filter((k) => !['flake', 'file', 'attr', 'expr', 'args', 'argstrs'].includes(k));
  if (unknown.length) return { error: `nixlayer.target has unknown keys: ${unknown.join(', ')}` };
  if (t.file && t.expr) return { error: 'nixlayer.target: give either "file" (with "attr") or "expr", not both' };
  if (t.flake && (t.file || t.expr || t.attr || t.args || t.argstrs)) {
    return { error: 'nixlayer.target: a "flake" reference names its package after # (".#hello"); give it alone' };
  }
  if (t.file) {
    let file = expandVariables(t.file, ctx);
    if (!path.isAbsolute(file) && ctx.workspaceFolder) file = path.resolve(ctx.workspaceFolder, file);
    t.file = file;
  }
  return Object.keys(t).length ? { target: t } : {};
}

// ---------------------------------------------------------------------------
// Language-server features the extension keeps. It coexists with the Nix
// language extensions (nil, nixd, Nix IDE): it only adds code lenses, hovers,
// diagnostics and commands, so these features are never registered even if a
// server offers them.

export const BLOCKED_METHODS: ReadonlySet<string> = new Set([
  'textDocument/completion',
  'textDocument/formatting',
  'textDocument/rangeFormatting',
  'textDocument/onTypeFormatting',
  'textDocument/semanticTokens',
  'textDocument/rename',
  'textDocument/signatureHelp',
  'textDocument/documentSymbol',
  'textDocument/foldingRange',
  'textDocument/selectionRange',
  'textDocument/documentColor',
  'textDocument/linkedEditingRange',
  'textDocument/inlineCompletion',
  'textDocument/documentHighlight',
  'textDocument/definition',
  'textDocument/references',
  // The extension registers the nixlayer.* commands itself (to handle their results).
  'workspace/executeCommand',
]);

// ---------------------------------------------------------------------------
// Commands.

export const SERVER_COMMANDS = [
  'nixlayer.build',
  'nixlayer.rebuildFrom',
  'nixlayer.openShell',
  'nixlayer.showLog',
  'nixlayer.browse',
  'nixlayer.diff',
  'nixlayer.cancel',
  'nixlayer.chooseTarget',
] as const;
export type ServerCommand = (typeof SERVER_COMMANDS)[number];

export interface CommandArg {
  uri?: string;
  phase?: string;
  /** The target nixlayer.chooseTarget picks (a name from nixlayer/targets). */
  target?: string;
}

/**
 * Turns what VS Code passes to a command (the lens's argument object, a URI
 * string from a menu, nothing from the palette) into the server's argument.
 */
export function normalizeCommandArg(arg: unknown, fallbackUri?: string): CommandArg {
  const out: CommandArg = {};
  if (typeof arg === 'string') {
    if (/^[a-z][a-z0-9+.-]*:/i.test(arg)) out.uri = arg;
    else if (arg !== '') out.phase = arg;
  } else if (arg && typeof arg === 'object') {
    const o = arg as Record<string, unknown>;
    if (typeof o.uri === 'string') out.uri = o.uri;
    if (typeof o.phase === 'string' && o.phase !== '') out.phase = o.phase;
    if (typeof o.target === 'string' && o.target !== '') out.target = o.target;
  }
  if (!out.uri && fallbackUri) out.uri = fallbackUri;
  return out;
}

export function needsPhase(command: string): boolean {
  return (
    command === 'nixlayer.rebuildFrom' ||
    command === 'nixlayer.openShell' ||
    command === 'nixlayer.showLog' ||
    command === 'nixlayer.browse' ||
    command === 'nixlayer.diff'
  );
}

interface LensLike {
  command?: { command?: string; arguments?: unknown[]; title?: string };
}

/** Phase names found in the arguments of the server's code lenses, in order, without duplicates. */
export function phasesFromLenses(lenses: readonly LensLike[] | undefined): string[] {
  const out: string[] = [];
  for (const l of lenses ?? []) {
    for (const a of l.command?.arguments ?? []) {
      const p = a && typeof a === 'object' ? (a as Record<string, unknown>).phase : undefined;
      if (typeof p === 'string' && p !== '' && !out.includes(p)) out.push(p);
    }
  }
  return out;
}

/** The server's request for the phases to offer (the extension keeps no phase list of its own). */
export const PHASES_REQUEST = 'nixlayer/phases';

/** The server's answer to nixlayer/phases: the derivation's phases in order, and the phase of the attribute on the asked line. */
export interface PhaseChoices {
  phases: string[];
  at?: string;
}

/** Reads a nixlayer/phases answer; undefined when it is not one. */
export function phaseChoicesFrom(result: unknown): PhaseChoices | undefined {
  if (!result || typeof result !== 'object' || Array.isArray(result)) return undefined;
  const o = result as Record<string, unknown>;
  if (!Array.isArray(o.phases) || !o.phases.every((p) => typeof p === 'string' && p !== '')) return undefined;
  const out: PhaseChoices = { phases: o.phases as string[] };
  if (typeof o.at === 'string' && out.phases.includes(o.at)) out.at = o.at;
  return out;
}

/** The server's request for the targets that match a document (a flake's outputs, a nixpkgs checkout's attributes). */
export const TARGETS_REQUEST = 'nixlayer/targets';

/** One target the server found for a document: `name` picks it, `how` says what it is. */
export interface TargetChoice {
  name: string;
  how: string;
}

/** The server's answer to nixlayer/targets. */
export interface TargetChoices {
  how?: string;
  chosen?: string;
  choices: TargetChoice[];
}

/** Reads a nixlayer/targets answer; undefined when it is not one. */
export function targetChoicesFrom(result: unknown): TargetChoices | undefined {
  if (!result || typeof result !== 'object' || Array.isArray(result)) return undefined;
  const o = result as Record<string, unknown>;
  if (!Array.isArray(o.choices)) return undefined;
  const choices: TargetChoice[] = [];
  for (const c of o.choices) {
    const r = c && typeof c === 'object' ? (c as Record<string, unknown>) : {};
    if (typeof r.name !== 'string' || r.name === '') return undefined;
    choices.push({ name: r.name, how: typeof r.how === 'string' ? r.how : r.name });
  }
  const out: TargetChoices = { choices };
  if (typeof o.how === 'string' && o.how !== '') out.how = o.how;
  if (typeof o.chosen === 'string' && o.chosen !== '') out.chosen = o.chosen;
  return out;
}

/** Quick-pick items for the targets, the chosen one marked. */
export function targetPickItems(t: TargetChoices): { label: string; description?: string; name: string }[] {
  return t.choices.map((c) => ({ label: c.how, description: c.name === t.chosen ? 'chosen now' : undefined, name: c.name }));
}

/** Quick-pick items for the phases, the one at the cursor first. */
export function phasePickItems(c: PhaseChoices): { label: string; description?: string }[] {
  const items = c.phases.map((p) => ({ label: p, description: p === c.at ? 'at the cursor' : undefined }));
  if (c.at) items.sort((a, b) => (a.label === c.at ? -1 : b.label === c.at ? 1 : 0));
  return items;
}

export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line from nixlayer.openShell's result: a string, an argv array, or {command|commandLine|argv}. */
export function shellCommandFrom(result: unknown): string | undefined {
  if (typeof result === 'string') return result.trim() || undefined;
  if (Array.isArray(result)) {
    return result.every((x) => typeof x === 'string') && result.length > 0 ? result.map(shellQuote).join(' ') : undefined;
  }
  if (result && typeof result === 'object') {
    const o = result as Record<string, unknown>;
    for (const k of ['commandLine', 'command', 'cmd', 'argv', 'args']) {
      if (o[k] !== undefined) {
        const r = shellCommandFrom(o[k]);
        if (r) return r;
      }
    }
  }
  return undefined;
}

/** The log text from nixlayer.showLog's result: a string, lines, or {log|text|content}. */
export function logTextFrom(result: unknown): string | undefined {
  if (typeof result === 'string') return result;
  if (Array.isArray(result) && result.every((x) => typeof x === 'string')) return result.join('\n');
  if (result && typeof result === 'object') {
    const o = result as Record<string, unknown>;
    for (const k of ['log', 'text', 'content', 'lines']) {
      const r = logTextFrom(o[k]);
      if (r !== undefined) return r;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Build progress ($/progress work-done reports) → status bar text and log lines.

/**
 * The kinds of build events the server reports (events.EventKind in the Go code):
 * the phase kinds, and engine states (wait, learn, rewrite, …, and whatever a
 * newer engine adds: provisional, verified, …), which are shown by their text.
 */
export type BuildEventKind =
  | 'wait'
  | 'repair'
  | 'plan'
  | 'cached'
  | 'learn'
  | 'learned'
  | 'rewrite'
  | 'verdict'
  | 'fallback'
  | 'start'
  | 'done'
  | 'failed'
  | 'deliver'
  | 'gc'
  | 'finished'
  | 'background'
  | 'provisional'
  | 'verifying'
  | 'verified'
  | 'replaced'
  | 'unverified'
  | 'pull'
  | 'pulled'
  | 'push'
  | 'pushed'
  | 'audit'
  | 'warning'
  | (string & {});

/** The event kinds about a build's phases; every other kind is an engine state. */
const PHASE_EVENT_KINDS: ReadonlySet<string> = new Set(['plan', 'cached', 'start', 'done', 'failed', 'deliver', 'finished']);

/** Whether an event reports the engine's state (waiting for a lock, learning, a provisional result, …). */
export function isEngineState(kind: string | undefined): boolean {
  return kind !== undefined && !PHASE_EVENT_KINDS.has(kind);
}

/** A status-bar icon for an engine state. */
export function stateIcon(kind: string): string {
  switch (kind) {
    case 'wait':
      return '$(watch)';
    case 'learn':
    case 'learned':
    case 'background':
      return '$(mortar-board)';
    case 'provisional':
    case 'verifying':
      return '$(clock)';
    case 'verified':
    case 'replaced':
      return '$(verified)';
    case 'unverified':
      return '$(warning)';
    case 'audit':
      return '$(search)';
    default:
      return '$(info)';
  }
}

/** A build event as the server sends it in a report's `event` field. */
export interface BuildEvent {
  kind: BuildEventKind;
  phase?: string;
  index?: number;
  total?: number;
  message?: string;
  follows?: string;
  exact?: boolean;
  /** Bytes downloaded or sent (pull, pulled, pushed). */
  bytes?: number;
  /** The result's state and its derivation, on the result-state kinds. */
  state?: string;
  drv?: string;
}

/** The notification the server sends when background work changes a result's state; its params are a BuildEvent. */
export const RESULT_STATE_NOTIFICATION = 'nixlayer/resultState';

/** How a build ended, in the end value's `outcome` field. */
export type BuildOutcomeKind = 'succeeded' | 'failed' | 'cancelled' | 'error';

export type ProgressValue =
  | { kind: 'begin'; title: string; message?: string; percentage?: number; cancellable?: boolean }
  | { kind: 'report'; message?: string; percentage?: number; cancellable?: boolean; event?: BuildEvent }
  | { kind: 'end'; message?: string; outcome?: BuildOutcomeKind };

export interface BuildStatus {
  /** Status bar text, undefined to hide. */
  text?: string;
  tooltip?: string;
  state: 'idle' | 'running' | 'succeeded' | 'failed';
}

interface Run {
  title: string;
  message?: string;
  percentage?: number;
  started: number;
  /** The phase the server reported failed, if any. */
  failedPhase?: string;
  /** The engine's state (an event that is not a phase's progress), until the next phase event. */
  state?: { kind: string; text: string };
}

export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m} min ${s} s`;
}

/**
 * Follows the work-done progress of builds (several tokens may be active at once)
 * and tells what the status bar should show and which lines go to the build log.
 */
export class ProgressTracker {
  private readonly runs = new Map<string, Run>();
  private last: BuildStatus = { state: 'idle' };
  private lastLogLine: string | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** Applies one progress value; returns the lines to append to the build log. */
  update(token: string | number, value: ProgressValue): string[] {
    const key = String(token);
    const lines: string[] = [];
    const push = (l: string | undefined) => {
      if (l === undefined) return;
      for (const line of l.split(/\r?\n/)) {
        if (line === '' || line === this.lastLogLine) continue;
        lines.push(line);
        this.lastLogLine = line;
      }
    };
    switch (value.kind) {
      case 'begin': {
        this.runs.set(key, { title: value.title, message: value.message, percentage: value.percentage, started: this.now() });
        push(`▶ ${value.title}${value.message ? `: ${value.message}` : ''}`);
        break;
      }
      case 'report': {
        const run = this.runs.get(key) ?? { title: 'nixlayer', started: this.now() };
        if (value.message !== undefined) run.message = value.message;
        if (value.percentage !== undefined) run.percentage = value.percentage;
        const ev = value.event;
        if (ev?.kind === 'failed') run.failedPhase = ev.phase;
        if (ev && isEngineState(ev.kind)) run.state = { kind: ev.kind, text: value.message ?? ev.message ?? ev.kind };
        else if (ev && (ev.kind === 'start' || ev.kind === 'cached')) run.state = undefined;
        this.runs.set(key, run);
        push(value.message);
        break;
      }
      case 'end': {
        const run = this.runs.get(key);
        this.runs.delete(key);
        const took = run ? formatDuration(this.now() - run.started) : undefined;
        // The server says how the build ended; a failed phase reported on the way counts too.
        const cancelled = value.outcome === 'cancelled';
        const failed = value.outcome === 'failed' || value.outcome === 'error' || cancelled || run?.failedPhase !== undefined;
        const title = run?.title ?? 'nixlayer';
        const msg = value.message ?? (failed ? (run?.failedPhase ? `failed in ${run.failedPhase}` : 'failed') : 'done');
        push(`${failed ? '✗' : '✓'} ${title}: ${msg}${took ? ` (${took})` : ''}`);
        if (this.runs.size === 0) {
          const outcome = cancelled ? 'build cancelled' : failed ? 'build failed' : 'built';
          // A state the engine reported after the phases (learning, a provisional result, …) stays in view.
          const after = run?.state && !failed ? ` · ${stateIcon(run.state.kind)} ${truncate(firstClause(run.state.text), 40)}` : '';
          this.last = {
            state: failed ? 'failed' : 'succeeded',
            text: `${failed ? '$(error)' : '$(check)'} nixlayer: ${outcome}${took ? ` in ${took}` : ''}${after}`,
            tooltip: `${title}: ${msg}${run?.state ? `\n${run.state.text}` : ''}\nClick to show the build output.`,
          };
        }
        break;
      }
    }
    return lines;
  }

  /** The tokens of the running builds. */
  runningTokens(): string[] {
    return [...this.runs.keys()];
  }

  /** Whether a build is running. */
  get running(): boolean {
    return this.runs.size > 0;
  }

  /** What the status bar shows now: the most recently started running build, or the last result. */
  status(): BuildStatus {
    const runs = [...this.runs.values()];
    if (runs.length === 0) return this.last;
    const run = runs[runs.length - 1];
    const pct = run.percentage !== undefined ? ` ${Math.round(run.percentage)}%` : '';
    const what = run.message ? firstLine(run.message) : run.title;
    const more = runs.length > 1 ? ` (+${runs.length - 1})` : '';
    const icon = run.state ? stateIcon(run.state.kind) : '$(sync~spin)';
    return {
      state: 'running',
      text: `${icon} nixlayer: ${truncate(what, 48)}${pct}${more}`,
      tooltip: `${run.title}${run.message ? `\n${run.message}` : ''}\nClick to show the build output; "nixlayer: Cancel Build" stops it.`,
    };
  }

  /**
   * A result's new state, which background work settled after its build
   * (the server's nixlayer/resultState notification, whose params are the
   * event): shown like a build's result unless a build runs. Returns the
   * build log line.
   */
  resultState(ev: BuildEvent): string {
    const text = ev.message ?? ev.kind;
    if (this.runs.size === 0) {
      this.last = {
        state: 'succeeded',
        text: `${stateIcon(ev.kind)} nixlayer: ${truncate(firstClause(text), 60)}`,
        tooltip: `${text}\nClick to show the build output.`,
      };
    }
    return `${ev.kind === 'unverified' ? '⚠' : '✓'} ${text}`;
  }

  /** Forgets the last result (the status bar item hides). */
  clearResult(): void {
    this.last = { state: 'idle' };
  }
}

/** The text before the first parenthesis (details such as a pid or a log path). */
function firstClause(s: string): string {
  const line = firstLine(s);
  const i = line.indexOf(' (');
  return i > 0 ? line.slice(0, i) : line;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

/** Formats a window/logMessage for the build log (type: 1 error, 2 warning, 3 info, 4 log, 5 debug). */
export function formatLogMessage(type: number, message: string): string {
  const prefix = type === 1 ? '[error] ' : type === 2 ? '[warning] ' : '';
  return prefix + message.replace(/\r?\n$/, '');
}

/** What nixlayer.build / nixlayer.rebuildFrom answered ({ok, ran, reused, seconds, failedPhase, error}). */
export interface BuildOutcome {
  ok: boolean;
  failedPhase?: string;
  error?: string;
  summary?: string;
}

export function buildOutcome(result: unknown): BuildOutcome | undefined {
  if (!result || typeof result !== 'object' || Array.isArray(result)) return undefined;
  const o = result as Record<string, unknown>;
  if (typeof o.ok !== 'boolean') return undefined;
  const out: BuildOutcome = { ok: o.ok };
  if (typeof o.failedPhase === 'string' && o.failedPhase) out.failedPhase = o.failedPhase;
  if (typeof o.error === 'string' && o.error) out.error = o.error;
  if (o.ok) {
    const ran = Array.isArray(o.ran) ? o.ran.length : undefined;
    const reused = Array.isArray(o.reused) ? o.reused.length : undefined;
    const parts: string[] = [];
    if (ran !== undefined) parts.push(`${ran} phase${ran === 1 ? '' : 's'} ran`);
    if (reused !== undefined) parts.push(`${reused} cached`);
    if (typeof o.seconds === 'number') parts.push(formatDuration(o.seconds * 1000));
    if (o.inStore === false) parts.push('kept outside the store');
    if (parts.length) out.summary = parts.join(', ');
  }
  return out;
}

/** The working directory from nixlayer.openShell's result ({cwd}), if any. */
export function shellCwdFrom(result: unknown): string | undefined {
  if (result && typeof result === 'object' && !Array.isArray(result)) {
    const cwd = (result as Record<string, unknown>).cwd;
    if (typeof cwd === 'string' && cwd !== '') return cwd;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// A phase's tree and what a phase changed (nixlayer.browse, nixlayer.diff),
// read through the server's layer requests.

/** The URI scheme of files in a layer's tree: nixlayer-layer://LAYER/build/…, as the builder saw the path. */
export const LAYER_SCHEME = 'nixlayer-layer';
/** The authority standing for a tree without the file (the other side of an added or removed file's diff). */
export const NO_LAYER = 'none';

/** The server's requests that read a layer's tree (docs/editors.md). */
export const LAYER_FILES_REQUEST = 'nixlayer/layerFiles';
export const READ_LAYER_FILE_REQUEST = 'nixlayer/readLayerFile';
/** Error codes of the layer requests. */
export const CODE_LAYER_GONE = -32004;
export const CODE_FILE_NOT_FOUND = -32005;

/** A file of a layer's tree as the server describes it (runner.FileInfo). */
export interface LayerFileInfo {
  name: string;
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtime: string;
  target?: string;
  targetType?: 'file' | 'dir' | 'symlink' | 'other';
}

/** VS Code's FileType bits, without the vscode module. */
export const FILE_TYPE = { Unknown: 0, File: 1, Directory: 2, SymbolicLink: 64 } as const;

/** The FileType of a file of a layer's tree (a symlink with what it points to inside the tree). */
export function fileTypeOf(fi: Pick<LayerFileInfo, 'type' | 'targetType'>): number {
  const base = (t: string | undefined) => (t === 'file' ? FILE_TYPE.File : t === 'dir' ? FILE_TYPE.Directory : FILE_TYPE.Unknown);
  if (fi.type === 'symlink') return FILE_TYPE.SymbolicLink | base(fi.targetType);
  return base(fi.type);
}

/** A layer request failed because the layer is gone, the file is missing, or otherwise. */
export function layerErrorKind(e: unknown): 'gone' | 'notFound' | 'other' {
  const code = (e as { code?: unknown })?.code;
  if (code === CODE_LAYER_GONE) return 'gone';
  if (code === CODE_FILE_NOT_FOUND) return 'notFound';
  return 'other';
}

/** What nixlayer.browse answers: the layer holding the tree a phase left. */
export interface BrowseTarget {
  layer: string;
  phase: string;
  label: string;
  state: string;
  roots: string[];
  note?: string;
}

export function browseFrom(result: unknown): BrowseTarget | undefined {
  if (!result || typeof result !== 'object') return undefined;
  const o = result as Record<string, unknown>;
  if (typeof o.layer !== 'string' || !/^[0-9a-f]{12,}$/.test(o.layer) || typeof o.phase !== 'string') return undefined;
  const roots = Array.isArray(o.roots) ? o.roots.filter((r): r is string => typeof r === 'string' && r.startsWith('/')) : [];
  return {
    layer: o.layer,
    phase: o.phase,
    label: typeof o.label === 'string' ? o.label : o.phase,
    state: typeof o.state === 'string' ? o.state : '',
    roots: roots.length ? roots : ['/'],
    note: typeof o.note === 'string' && o.note ? o.note : undefined,
  };
}

/** One changed file of nixlayer.diff's answer, ready for a list: its two sides as layer URIs. */
export interface ChangeItem {
  path: string;
  kind: 'added' | 'changed' | 'removed';
  type: string;
  label: string;
  description: string;
  /** The file before the phase (the base layer), or in NO_LAYER for an added file. */
  left: string;
  /** The file after the phase, or in NO_LAYER for a removed one. */
  right: string;
}

export interface PhaseChanges {
  layer: string;
  phase: string;
  base?: string;
  basePhase?: string;
  label: string;
  truncated: boolean;
  items: ChangeItem[];
}

export function layerUriString(layer: string, p: string): string {
  return `${LAYER_SCHEME}://${layer}${p.startsWith('/') ? p : `/${p}`}`;
}

/** Reads nixlayer.diff's answer into list items. */
export function changesFrom(result: unknown): PhaseChanges | undefined {
  if (!result || typeof result !== 'object') return undefined;
  const o = result as Record<string, unknown>;
  if (typeof o.layer !== 'string' || typeof o.phase !== 'string' || !Array.isArray(o.changes)) return undefined;
  const base = typeof o.base === 'string' && o.base ? o.base : undefined;
  const items: ChangeItem[] = [];
  for (const c of o.changes) {
    if (!c || typeof c !== 'object') continue;
    const x = c as Record<string, unknown>;
    const kind = x.kind;
    if (typeof x.path !== 'string' || (kind !== 'added' && kind !== 'changed' && kind !== 'removed')) continue;
    const slash = x.path.lastIndexOf('/');
    items.push({
      path: x.path,
      kind,
      type: typeof x.type === 'string' ? x.type : 'file',
      label: x.path.slice(slash + 1),
      description: `${x.path.slice(0, slash) || '/'} · ${kind}`,
      left: layerUriString(kind === 'added' || !base ? NO_LAYER : base, x.path),
      right: layerUriString(kind === 'removed' ? NO_LAYER : o.layer, x.path),
    });
  }
  return {
    layer: o.layer,
    phase: o.phase,
    base,
    basePhase: typeof o.basePhase === 'string' && o.basePhase ? o.basePhase : undefined,
    label: typeof o.label === 'string' ? o.label : o.phase,
    truncated: o.truncated === true,
    items,
  };
}
