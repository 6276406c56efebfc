import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BLOCKED_METHODS,
  browseFrom,
  buildOutcome,
  changesFrom,
  CODE_FILE_NOT_FOUND,
  CODE_LAYER_GONE,
  fileTypeOf,
  isEngineState,
  layerErrorKind,
  shellCwdFrom,
  expandVariables,
  formatDuration,
  formatLogMessage,
  logTextFrom,
  missingExecutableMessage,
  normalizeCommandArg,
  OnceGate,
  phaseChoicesFrom,
  phasePickItems,
  phasesFromLenses,
  ProgressTracker,
  resolveExecutable,
  resolveTarget,
  RestartPolicy,
  shellCommandFrom,
  shellQuote,
  startFailedMessage,
  targetChoicesFrom,
  targetPickItems,
} from '../../src/logic';

test('resolveExecutable finds a bare name on PATH', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixlayer-unit-'));
  const exe = path.join(dir, 'nixlayer');
  fs.writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'plain'), 'x', { mode: 0o644 });
  try {
    assert.deepEqual(resolveExecutable(undefined, { envPath: `/nonexistent:${dir}` }), { ok: true, path: exe });
    assert.deepEqual(resolveExecutable('', { envPath: dir }), { ok: true, path: exe });
    assert.deepEqual(resolveExecutable(exe, { envPath: '' }), { ok: true, path: exe });
    assert.deepEqual(resolveExecutable('./nixlayer', { envPath: '', workspaceFolder: dir }), { ok: true, path: exe });
    assert.deepEqual(resolveExecutable('${workspaceFolder}/nixlayer', { envPath: '', workspaceFolder: dir }), { ok: true, path: exe });
    const notExec = resolveExecutable(path.join(dir, 'plain'), { envPath: '' });
    assert.equal(notExec.ok, false);
    assert.equal(!notExec.ok && notExec.reason, 'not-executable');
    // a non-executable file of the right name on PATH is skipped
    const r = resolveExecutable('plain', { envPath: dir });
    assert.equal(r.ok, false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('resolveExecutable reports what it searched when nixlayer is missing', () => {
  const r = resolveExecutable('nixlayer', { envPath: '/a:/b', isExecutable: () => 'missing' });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.reason, 'not-found');
  assert.match(r.detail, /"nixlayer" is not on PATH \(\/a:\/b\)/);
  const msg = missingExecutableMessage(r);
  assert.match(msg, /not found/);
  assert.match(msg, /nixlayer\.path/);
  const abs = resolveExecutable('/opt/nixlayer/bin/nixlayer', { isExecutable: () => 'missing' });
  assert.equal(!abs.ok && abs.detail, '/opt/nixlayer/bin/nixlayer does not exist');
});

test('expandVariables', () => {
  const ctx = { workspaceFolder: '/ws', home: '/home/u', env: { FOO: 'bar' } };
  assert.equal(expandVariables('~/bin/nixlayer', ctx), '/home/u/bin/nixlayer');
  assert.equal(expandVariables('${workspaceFolder}/bin/nixlayer', ctx), '/ws/bin/nixlayer');
  assert.equal(expandVariables('${userHome}/x', ctx), '/home/u/x');
  assert.equal(expandVariables('${env:FOO}/x', ctx), 'bar/x');
  assert.equal(expandVariables('${env:NOPE}x', ctx), 'x');
  assert.equal(expandVariables('${workspaceFolder}', { home: '/h' }), '${workspaceFolder}');
  assert.equal(expandVariables('a~b', ctx), 'a~b');
});

test('resolveTarget validates and resolves the target setting', () => {
  const ctx = { workspaceFolder: '/ws', home: '/home/u' };
  assert.deepEqual(resolveTarget(undefined, ctx), {});
  assert.deepEqual(resolveTarget(null, ctx), {});
  assert.deepEqual(resolveTarget({}, ctx), {});
  assert.deepEqual(resolveTarget({ file: './default.nix', attr: 'hello' }, ctx), { target: { file: '/ws/default.nix', attr: 'hello' } });
  assert.deepEqual(resolveTarget({ file: '/abs/x.nix' }, ctx), { target: { file: '/abs/x.nix' } });
  assert.deepEqual(resolveTarget({ file: '~/x.nix', attr: '' }, ctx), { target: { file: '/home/u/x.nix' } });
  assert.deepEqual(resolveTarget({ expr: 'with import <nixpkgs> {}; hello' }, ctx), {
    target: { expr: 'with import <nixpkgs> {}; hello' },
  });
  assert.ok(resolveTarget('default.nix', ctx).error);
  assert.ok(resolveTarget({ file: 'a.nix', attr: 3 }, ctx).error);
  assert.ok(resolveTarget({ file: 'a.nix', expr: 'x' }, ctx).error);
  assert.deepEqual(resolveTarget({ attr: 'hello', argstrs: { salt: 'x' }, args: { nfiles: 20 } }, ctx), {
    target: { attr: 'hello', argstrs: { salt: 'x' }, args: { nfiles: '20' } },
  });
  assert.ok(resolveTarget({ attr: 'x', args: ['a'] }, ctx).error);
  assert.ok(resolveTarget({ attr: 'x', args: { a: {} } }, ctx).error);
  assert.ok(resolveTarget({ fil: 'a.nix' }, ctx).error);
});

test('normalizeCommandArg accepts lens arguments, URIs and nothing', () => {
  assert.deepEqual(normalizeCommandArg({ uri: 'file:///a.nix', phase: 'installPhase' }), { uri: 'file:///a.nix', phase: 'installPhase' });
  assert.deepEqual(normalizeCommandArg(undefined, 'file:///b.nix'), { uri: 'file:///b.nix' });
  assert.deepEqual(normalizeCommandArg('file:///c.nix', 'file:///b.nix'), { uri: 'file:///c.nix' });
  assert.deepEqual(normalizeCommandArg('buildPhase', 'file:///b.nix'), { uri: 'file:///b.nix', phase: 'buildPhase' });
  assert.deepEqual(normalizeCommandArg({ phase: '' }), {});
  assert.deepEqual(normalizeCommandArg(42), {});
});

test('phasesFromLenses, phaseChoicesFrom, phasePickItems', () => {
  const lenses = [
    { command: { command: 'nixlayer.build', arguments: [{ uri: 'file:///a.nix' }] } },
    { command: { command: 'nixlayer.rebuildFrom', arguments: [{ uri: 'file:///a.nix', phase: 'configurePhase' }] } },
    { command: { command: 'nixlayer.rebuildFrom', arguments: [{ uri: 'file:///a.nix', phase: 'installPhase' }] } },
    { command: { command: 'nixlayer.showLog', arguments: [{ uri: 'file:///a.nix', phase: 'installPhase' }] } },
    {},
  ];
  assert.deepEqual(phasesFromLenses(lenses), ['configurePhase', 'installPhase']);
  assert.deepEqual(phasesFromLenses(undefined), []);
  // The server's answer to nixlayer/phases.
  const c = phaseChoicesFrom({ phases: ['unpackPhase', 'buildPhase', 'installPhase'], planned: true, at: 'buildPhase' });
  assert.deepEqual(c, { phases: ['unpackPhase', 'buildPhase', 'installPhase'], at: 'buildPhase' });
  assert.deepEqual(phasePickItems(c!), [
    { label: 'buildPhase', description: 'at the cursor' },
    { label: 'unpackPhase', description: undefined },
    { label: 'installPhase', description: undefined },
  ]);
  assert.deepEqual(phaseChoicesFrom({ phases: ['unpackPhase'], at: 'makePhase' }), { phases: ['unpackPhase'] });
  assert.equal(phaseChoicesFrom({ phases: 'unpackPhase' }), undefined);
  assert.equal(phaseChoicesFrom(null), undefined);
});

test('resolveTarget takes a flake reference alone', () => {
  assert.deepEqual(resolveTarget({ flake: '.#hello' }, { workspaceFolder: '/w' }), { target: { flake: '.#hello' } });
  assert.match(resolveTarget({ flake: '.#hello', attr: 'x' }, {}).error ?? '', /give it alone/);
});

test('targetChoicesFrom and targetPickItems: the targets the server found', () => {
  const t = targetChoicesFrom({
    how: 'nixpkgs attribute greeter (callPackage in all-packages.nix)',
    chosen: 'greeter',
    choices: [
      { name: 'greeter', how: 'nixpkgs attribute greeter (callPackage in all-packages.nix)' },
      { name: 'greeter-loud', how: 'nixpkgs attribute greeter-loud (callPackage in all-packages.nix)' },
    ],
  });
  assert.equal(t?.chosen, 'greeter');
  assert.deepEqual(targetPickItems(t!), [
    { label: 'nixpkgs attribute greeter (callPackage in all-packages.nix)', description: 'chosen now', name: 'greeter' },
    { label: 'nixpkgs attribute greeter-loud (callPackage in all-packages.nix)', description: undefined, name: 'greeter-loud' },
  ]);
  assert.deepEqual(targetChoicesFrom({ choices: [] }), { choices: [] });
  assert.equal(targetChoicesFrom({ choices: [{ how: 'no name' }] }), undefined);
  assert.equal(targetChoicesFrom({ how: 'x' }), undefined);
  assert.equal(targetChoicesFrom(null), undefined);
  assert.deepEqual(normalizeCommandArg({ uri: 'file:///a.nix', target: 'greeter-loud' }), { uri: 'file:///a.nix', target: 'greeter-loud' });
});

test('shellCommandFrom and shellQuote', () => {
  assert.equal(shellCommandFrom('nixlayer shell --at installPhase -f /x/default.nix\n'), 'nixlayer shell --at installPhase -f /x/default.nix');
  assert.equal(shellCommandFrom(['nixlayer', 'shell', '--at', 'installPhase', '-E', 'import ./a b.nix']), "nixlayer shell --at installPhase -E 'import ./a b.nix'");
  assert.equal(shellCommandFrom({ commandLine: 'a b' }), 'a b');
  assert.equal(shellCommandFrom({ argv: ['a', "it's"] }), `a 'it'\\''s'`);
  assert.equal(shellCommandFrom(''), undefined);
  assert.equal(shellCommandFrom(null), undefined);
  assert.equal(shellCommandFrom({ other: 1 }), undefined);
  assert.equal(shellQuote('--at=installPhase'), '--at=installPhase');
  assert.equal(shellQuote(''), "''");
});

test('logTextFrom', () => {
  assert.equal(logTextFrom('line1\nline2'), 'line1\nline2');
  assert.equal(logTextFrom(['a', 'b']), 'a\nb');
  assert.equal(logTextFrom({ log: 'x' }), 'x');
  assert.equal(logTextFrom({ text: 'y' }), 'y');
  assert.equal(logTextFrom(null), undefined);
  assert.equal(logTextFrom({}), undefined);
});

test('ProgressTracker: begin, reports, end drive the status bar and the log', () => {
  let now = 1000;
  const t = new ProgressTracker(() => now);
  assert.deepEqual(t.status(), { state: 'idle' });
  assert.deepEqual(t.update('tok', { kind: 'begin', title: 'nixlayer build hello', message: 'unpackPhase' }), ['▶ nixlayer build hello: unpackPhase']);
  assert.equal(t.running, true);
  assert.equal(t.status().text, '$(sync~spin) nixlayer: unpackPhase');
  assert.deepEqual(t.update('tok', { kind: 'report', message: 'configurePhase', percentage: 42.4 }), ['configurePhase']);
  assert.equal(t.status().text, '$(sync~spin) nixlayer: configurePhase 42%');
  // repeated messages are not logged twice (the same line may come as logMessage too)
  assert.deepEqual(t.update('tok', { kind: 'report', percentage: 50 }), []);
  assert.deepEqual(t.update('tok', { kind: 'report', message: 'configurePhase' }), []);
  assert.deepEqual(t.update('tok', { kind: 'report', message: 'line a\nline b\n' }), ['line a', 'line b']);
  now += 12_345;
  assert.deepEqual(t.update('tok', { kind: 'end', message: '7 phases, 5 cached', outcome: 'succeeded' }), ['✓ nixlayer build hello: 7 phases, 5 cached (12 s)']);
  assert.equal(t.running, false);
  assert.equal(t.status().state, 'succeeded');
  assert.equal(t.status().text, '$(check) nixlayer: built in 12 s');
  t.clearResult();
  assert.deepEqual(t.status(), { state: 'idle' });
});

test('ProgressTracker: failures and concurrent builds', () => {
  let now = 0;
  const t = new ProgressTracker(() => now);
  t.update(1, { kind: 'begin', title: 'build a' });
  t.update('2', { kind: 'begin', title: 'build b', percentage: 10 });
  assert.equal(t.status().text, '$(sync~spin) nixlayer: build b 10% (+1)');
  assert.deepEqual(t.runningTokens(), ['1', '2']);
  now = 500;
  t.update('2', { kind: 'end' });
  assert.equal(t.status().state, 'running');
  assert.equal(t.status().text, '$(sync~spin) nixlayer: build a');
  const lines = t.update(1, { kind: 'end', message: 'hello failed in installPhase', outcome: 'failed' });
  assert.deepEqual(lines, ['✗ build a: hello failed in installPhase (0.5 s)']);
  assert.equal(t.status().state, 'failed');
  assert.match(t.status().text ?? '', /^\$\(error\) nixlayer: build failed/);
  t.update('c', { kind: 'begin', title: 'build c' });
  t.update('c', { kind: 'end', message: 'cancelled', outcome: 'cancelled' });
  assert.match(t.status().text ?? '', /^\$\(error\) nixlayer: build cancelled in /);
  // The outcome decides, not the words: a message that mentions failures is not a failure.
  t.update('d', { kind: 'begin', title: 'build d' });
  t.update('d', { kind: 'end', message: 'built failing-1: 2 phases ran, 0 cached', outcome: 'succeeded' });
  assert.equal(t.status().state, 'succeeded');
  // A failed-phase event counts even when the end comes without an outcome.
  t.update('e', { kind: 'begin', title: 'build e' });
  t.update('e', { kind: 'report', message: '[6/9] installPhase FAILED after 1s', event: { kind: 'failed', phase: 'installPhase', index: 6, total: 9 } });
  assert.deepEqual(t.update('e', { kind: 'end' }), ['✗ build e: failed in installPhase (0.0 s)']);
  assert.equal(t.status().state, 'failed');
  // a report for an unknown token (no begin seen) still shows as running
  t.update('x', { kind: 'report', message: 'buildPhase' });
  assert.equal(t.status().state, 'running');
});

test('formatDuration, formatLogMessage', () => {
  assert.equal(formatDuration(400), '0.4 s');
  assert.equal(formatDuration(42_000), '42 s');
  assert.equal(formatDuration(125_000), '2 min 5 s');
  assert.equal(formatLogMessage(1, 'boom\n'), '[error] boom');
  assert.equal(formatLogMessage(2, 'hm'), '[warning] hm');
  assert.equal(formatLogMessage(3, 'make: x'), 'make: x');
  assert.equal(formatLogMessage(4, 'cc -c a.c'), 'cc -c a.c');
});

test('OnceGate shows each message once until reset; RestartPolicy', () => {
  const g = new OnceGate();
  assert.equal(g.shouldShow('a'), true);
  assert.equal(g.shouldShow('a'), false);
  assert.equal(g.shouldShow('b'), true);
  g.reset();
  assert.equal(g.shouldShow('a'), true);
  const p = new RestartPolicy(2, 1000);
  assert.equal(p.crashed(0), true);
  assert.equal(p.crashed(10), true);
  assert.equal(p.crashed(20), false);
  assert.equal(p.crashed(5000), true, 'old crashes leave the window');
  assert.match(startFailedMessage('/x/nixlayer', 'error: not implemented yet\n'), /"\/x\/nixlayer lsp" failed to start: error: not implemented yet\. /);
});

test('competing language features are blocked, lenses and hovers are not', () => {
  for (const m of ['textDocument/completion', 'textDocument/formatting', 'textDocument/rangeFormatting', 'workspace/executeCommand']) {
    assert.ok(BLOCKED_METHODS.has(m), m);
  }
  for (const m of ['textDocument/codeLens', 'textDocument/hover', 'textDocument/diagnostic', 'textDocument/didOpen']) {
    assert.ok(!BLOCKED_METHODS.has(m), m);
  }
});

test('buildOutcome reads the server build result', () => {
  assert.deepEqual(buildOutcome({ ok: true, ran: ['installPhase', 'fixupPhase'], reused: ['a', 'b', 'c'], seconds: 1.25, inStore: true }), {
    ok: true,
    summary: '2 phases ran, 3 cached, 1.3 s',
  });
  assert.deepEqual(buildOutcome({ ok: false, failedPhase: 'installPhase', error: 'exit 1' }), {
    ok: false,
    failedPhase: 'installPhase',
    error: 'exit 1',
  });
  assert.equal(buildOutcome({ ok: true, ran: ['x'], reused: [], inStore: false })?.summary, '1 phase ran, 0 cached, kept outside the store');
  assert.equal(buildOutcome('done'), undefined);
  assert.equal(buildOutcome(null), undefined);
  assert.equal(shellCwdFrom({ command: 'x', cwd: '/tmp/w' }), '/tmp/w');
  assert.equal(shellCwdFrom('x'), undefined);
  assert.equal(shellCommandFrom({ command: 'nixlayer shell --at installPhase', argv: ['nixlayer'], cwd: '/w' }), 'nixlayer shell --at installPhase');
});

test('ProgressTracker: engine states show in the status bar, and after the build', () => {
  let now = 0;
  const t = new ProgressTracker(() => now);
  t.update('b', { kind: 'begin', title: 'build hello' });
  t.update('b', { kind: 'report', message: 'waiting for another build of the same derivation to finish', event: { kind: 'wait' } });
  assert.equal(t.status().text, '$(watch) nixlayer: waiting for another build of the same derivatio…');
  t.update('b', { kind: 'report', message: '[1/9] unpackPhase running', event: { kind: 'start', phase: 'unpackPhase' } });
  assert.equal(t.status().text, '$(sync~spin) nixlayer: [1/9] unpackPhase running');
  t.update('b', { kind: 'report', message: 'provisional result: verifying in the background', event: { kind: 'provisional' } });
  assert.match(t.status().text ?? '', /^\$\(clock\) nixlayer: provisional result/);
  // A kind this extension has never heard of is a state too (a newer engine's).
  t.update('b', { kind: 'report', message: 'compacting the cache', event: { kind: 'compact' } });
  assert.match(t.status().text ?? '', /^\$\(info\) nixlayer: compacting the cache/);
  now = 3000;
  t.update('b', { kind: 'report', message: 'learning the output-path map in the background (pid 42, log /x)', event: { kind: 'learn' } });
  t.update('b', { kind: 'end', message: 'built', outcome: 'succeeded' });
  assert.equal(t.status().text, '$(check) nixlayer: built in 3.0 s · $(mortar-board) learning the output-path map in the bac…');
  assert.equal(isEngineState('start'), false);
  assert.equal(isEngineState('verified'), true);
  // Later, the background work verifies the result (nixlayer/resultState).
  const line = t.resultState({ kind: 'verified', state: 'verified', drv: '/nix/store/x-hello-1.drv', message: 'hello-1: verified: identical to the exact rewrite (without a rebuild)' });
  assert.equal(line, '✓ hello-1: verified: identical to the exact rewrite (without a rebuild)');
  assert.equal(t.status().text, '$(verified) nixlayer: hello-1: verified: identical to the exact rewrite');
  // While a build runs, the running build keeps the status bar.
  t.update('c', { kind: 'begin', title: 'build hello' });
  t.resultState({ kind: 'replaced', message: 'hello-1: replaced: not exact' });
  assert.equal(t.status().state, 'running');
});

test('layer files: types, errors, browse and diff answers', () => {
  assert.equal(fileTypeOf({ type: 'file' }), 1);
  assert.equal(fileTypeOf({ type: 'dir' }), 2);
  assert.equal(fileTypeOf({ type: 'symlink', targetType: 'file' }), 65);
  assert.equal(fileTypeOf({ type: 'symlink' }), 64);
  assert.equal(layerErrorKind({ code: CODE_LAYER_GONE }), 'gone');
  assert.equal(layerErrorKind({ code: CODE_FILE_NOT_FOUND }), 'notFound');
  assert.equal(layerErrorKind(new Error('x')), 'other');

  const layer = 'ab'.repeat(32);
  assert.deepEqual(browseFrom({ layer, phase: 'installPhase', label: 'hello-1 · installPhase', state: 'cached', roots: ['/build', '/nix/store/x-hello-1', 5] }), {
    layer,
    phase: 'installPhase',
    label: 'hello-1 · installPhase',
    state: 'cached',
    roots: ['/build', '/nix/store/x-hello-1'],
    note: undefined,
  });
  assert.equal(browseFrom({ layer: '../etc', phase: 'x' }), undefined);
  assert.equal(browseFrom(null), undefined);

  const base = 'cd'.repeat(32);
  const c = changesFrom({
    layer,
    phase: 'installPhase',
    base,
    basePhase: 'checkPhase',
    label: 'hello-1 · installPhase',
    changes: [
      { path: '/nix/store/x-hello-1/bin/hello', kind: 'added', type: 'file' },
      { path: '/build/src/a.c', kind: 'changed', type: 'file' },
      { path: '/build/old', kind: 'removed', type: 'file' },
      { path: '/x', kind: 'renamed' },
    ],
  });
  assert.ok(c);
  assert.equal(c.items.length, 3);
  assert.deepEqual(c.items[0], {
    path: '/nix/store/x-hello-1/bin/hello',
    kind: 'added',
    type: 'file',
    label: 'hello',
    description: '/nix/store/x-hello-1/bin · added',
    left: 'nixlayer-layer://none/nix/store/x-hello-1/bin/hello',
    right: `nixlayer-layer://${layer}/nix/store/x-hello-1/bin/hello`,
  });
  assert.equal(c.items[1].left, `nixlayer-layer://${base}/build/src/a.c`);
  assert.equal(c.items[2].right, 'nixlayer-layer://none/build/old');
});
