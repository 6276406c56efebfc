// nixlayer for VS Code: starts `nixlayer lsp` for Nix files and adds its phase
// lenses, hovers, commands, build progress and build log to the editor.

import * as cp from 'node:child_process';
import * as os from 'node:os';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  type DynamicFeature,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  LogMessageNotification,
  LSPErrorCodes,
  RevealOutputChannelOn,
  type ServerOptions,
  State,
  type StaticFeature,
  WorkDoneProgress,
  WorkDoneProgressCancelNotification,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageclient/node';
import { LayerFileSystem, PhaseChangesView, PhaseTreeView } from './layers';
import {
  BLOCKED_METHODS,
  browseFrom,
  buildOutcome,
  changesFrom,
  crashedMessage,
  formatLogMessage,
  LAYER_SCHEME,
  logTextFrom,
  missingExecutableMessage,
  needsPhase,
  normalizeCommandArg,
  OnceGate,
  phaseChoicesFrom,
  type PhaseChoices,
  phasePickItems,
  PHASES_REQUEST,
  phasesFromLenses,
  ProgressTracker,
  type ProgressValue,
  resolveExecutable,
  resolveTarget,
  RestartPolicy,
  SERVER_COMMANDS,
  type ServerSettings,
  targetChoicesFrom,
  targetPickItems,
  TARGETS_REQUEST,
  shellCommandFrom,
  shellCwdFrom,
  startFailedMessage,
  RESULT_STATE_NOTIFICATION,
  type BuildEvent,
} from './logic';

const SECTION = 'nixlayer';

/** The language client, without the features that would compete with Nix language extensions. */
class NixlayerClient extends LanguageClient {
  lastErrors: string[] | undefined;

  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    const method = (feature as { registrationType?: { method?: unknown } }).registrationType?.method;
    if (typeof method === 'string' && BLOCKED_METHODS.has(method)) return;
    super.registerFeature(feature);
  }

  // The extension tells the user itself (once) when the server cannot start;
  // the client's own notifications only go to the output channel.
  override error(message: string, data?: unknown, _showNotification?: boolean | 'force'): void {
    (this.lastErrors ??= []).push(errorText(message, data));
    super.error(message, data, false);
  }
}

function errorText(message: string, data: unknown): string {
  if (data instanceof Error) return `${message} ${data.message}`;
  if (typeof data === 'string') return `${message} ${data}`;
  return message;
}

class Extension implements vscode.Disposable {
  private client: NixlayerClient | undefined;
  private exe: string | undefined;
  private starting: Promise<NixlayerClient | undefined> | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly clientDisposables: vscode.Disposable[] = [];
  private readonly serverChannel = vscode.window.createOutputChannel('nixlayer server', { log: true });
  private readonly buildChannel = vscode.window.createOutputChannel('nixlayer build');
  private readonly phaseLogChannel = vscode.window.createOutputChannel('nixlayer phase log');
  private readonly statusItem = vscode.window.createStatusBarItem('nixlayer.build', vscode.StatusBarAlignment.Left, 10);
  private readonly tracker = new ProgressTracker();
  private readonly once = new OnceGate();
  private readonly restarts = new RestartPolicy();
  private readonly watchedTokens = new Map<string, { token: string | number; client: NixlayerClient; dispose(): void }>();
  private readonly progressSeen = new Set<string>();
  private stderrTail: string[] = [];
  private hideTimer: NodeJS.Timeout | undefined;
  /** Why the server is not running, for commands run meanwhile. */
  private unavailable: string | undefined;
  private readonly layerFs = new LayerFileSystem(() => this.start());
  private readonly phaseTree = new PhaseTreeView(this.layerFs);
  private readonly phaseChanges = new PhaseChangesView();
  /** The last .nix document in an editor: what commands run from a layer's file are about. */
  private lastNix: string | undefined;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.statusItem.name = 'nixlayer build';
    this.statusItem.command = 'nixlayer.showBuildOutput';
    this.disposables.push(this.serverChannel, this.buildChannel, this.phaseLogChannel, this.statusItem, this.phaseTree, this.phaseChanges);
    this.disposables.push(
      vscode.workspace.registerFileSystemProvider(LAYER_SCHEME, this.layerFs, {
        isCaseSensitive: true,
        isReadonly: new vscode.MarkdownString('A layer of the nixlayer cache: the tree a build phase left. It cannot be changed.'),
      }),
      // Restricted Mode: the server evaluates nothing until the workspace is trusted.
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.sendSettings()),
      vscode.window.onDidChangeActiveTextEditor((e) => {
        if (e && isNixDocument(e.document)) this.lastNix = e.document.uri.toString();
      }),
    );
    const active = vscode.window.activeTextEditor;
    if (active && isNixDocument(active.document)) this.lastNix = active.document.uri.toString();

    for (const command of SERVER_COMMANDS) {
      this.disposables.push(vscode.commands.registerCommand(command, (arg?: unknown) => this.runServerCommand(command, arg)));
    }
    this.disposables.push(
      vscode.commands.registerCommand('nixlayer.showBuildOutput', () => this.buildChannel.show(true)),
      vscode.commands.registerCommand('nixlayer.showServerOutput', () => this.serverChannel.show(true)),
      vscode.commands.registerCommand('nixlayer.restartServer', () => this.restart(true)),
      vscode.commands.registerCommand('nixlayer.cancelBuild', () => this.cancelBuilds()),
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
    );
  }

  dispose(): void {
    void this.stop();
    for (const d of this.disposables) d.dispose();
  }

  private workspaceFolder(): string | undefined {
    const active = vscode.window.activeTextEditor?.document.uri;
    const folder = (active && vscode.workspace.getWorkspaceFolder(active)) ?? vscode.workspace.workspaceFolders?.[0];
    return folder?.uri.scheme === 'file' ? folder.uri.fsPath : undefined;
  }

  private serverSettings(): ServerSettings {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const r = resolveTarget(cfg.get('target'), { workspaceFolder: this.workspaceFolder() });
    if (r.error && this.once.shouldShow(`target:${r.error}`)) {
      void vscode.window.showWarningMessage(`nixlayer: ${r.error}. The setting is ignored.`, 'Open Settings').then((c) => {
        if (c) void vscode.commands.executeCommand('workbench.action.openSettings', 'nixlayer.target');
      });
    }
    // In Restricted Mode the server evaluates and builds nothing (evaluating Nix runs its code).
    const trusted = vscode.workspace.isTrusted;
    return r.target ? { target: r.target, trusted } : { trusted };
  }

  private onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration('nixlayer.path') || e.affectsConfiguration('nixlayer.serverArgs')) {
      this.once.reset();
      void this.restart(false);
      return;
    }
    if (e.affectsConfiguration('nixlayer.target')) {
      this.once.reset();
      this.sendSettings();
    }
  }

  private sendSettings(): void {
    if (this.client?.state !== State.Running) return;
    void this.client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: this.serverSettings() },
    });
  }

  /** Starts the server if it is not running; resolves to the client, or undefined if it cannot run. */
  start(): Promise<NixlayerClient | undefined> {
    if (this.client && this.client.state === State.Running) return Promise.resolve(this.client);
    this.starting ??= this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async doStart(): Promise<NixlayerClient | undefined> {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const folder = this.workspaceFolder();
    const found = resolveExecutable(cfg.get<string>('path'), { workspaceFolder: folder });
    if (!found.ok) {
      this.unavailable = missingExecutableMessage(found);
      this.serverChannel.error(this.unavailable);
      this.tell(`exe:${found.detail}`, this.unavailable);
      return undefined;
    }
    const exe = found.path;
    this.exe = exe;
    const extraArgs = (cfg.get<unknown[]>('serverArgs') ?? []).filter((a): a is string => typeof a === 'string');
    this.stderrTail = [];
    this.serverChannel.info(`starting ${exe} lsp ${extraArgs.join(' ')}`.trim());

    const serverOptions: ServerOptions = async () => {
      const child = cp.spawn(exe, ['lsp', ...extraArgs], {
        cwd: folder ?? os.homedir(),
        env: process.env,
        stdio: 'pipe',
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      child.on('exit', (code, signal) => {
        this.serverChannel.info(`${exe} lsp exited (${signal ? `signal ${signal}` : `code ${code}`})`);
      });
      return child;
    };

    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', language: 'nix' },
        { scheme: 'file', pattern: '**/*.nix' },
      ],
      outputChannel: this.serverChannel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: () => this.serverSettings(),
      initializationFailedHandler: () => false,
      stdioOptions: {
        stdout: (input, channel) => readline.createInterface({ input, terminal: false }).on('line', (l) => channel.info(l)),
        stderr: (input, channel) =>
          readline.createInterface({ input, terminal: false }).on('line', (l) => {
            this.stderrTail.push(l);
            if (this.stderrTail.length > 20) this.stderrTail.shift();
            channel.info(l);
          }),
      },
      errorHandler: {
        error: (_error, _message, count) => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: true,
        }),
        closed: () => {
          if (this.client?.state === State.Starting || !this.wasRunning) {
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          if (this.restarts.crashed(Date.now())) {
            this.serverChannel.warn('the language server stopped; restarting it');
            return { action: CloseAction.Restart, handled: true };
          }
          this.unavailable = crashedMessage(exe, this.restarts.count);
          this.tell(`crash:${exe}`, this.unavailable);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
      middleware: {
        workspace: {
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            if (!Array.isArray(result)) return result;
            return params.items.map((item, i) =>
              item.section === SECTION ? { ...(result[i] as object), ...this.serverSettings() } : result[i],
            );
          },
        },
      },
    };

    const client = new NixlayerClient('nixlayer', 'nixlayer', serverOptions, clientOptions);
    this.client = client;
    this.wasRunning = false;
    // Build log lines sent as window/logMessage go to the build output (the
    // handler registered here replaces the client's default one).
    client.onNotification(LogMessageNotification.type, (m) => {
      this.buildChannel.appendLine(formatLogMessage(m.type, m.message));
      this.serverChannel.trace(`logMessage(${m.type}): ${m.message}`);
    });
    // A provisional result verified or replaced in the background: the status bar says so (the lenses refresh themselves).
    client.onNotification(RESULT_STATE_NOTIFICATION, (ev: BuildEvent) => {
      this.buildChannel.appendLine(this.tracker.resultState(ev));
      this.renderStatus();
    });
    this.clientDisposables.push(
      client.onDidChangeState((e) => {
        if (e.newState === State.Running) {
          this.wasRunning = true;
          this.unavailable = undefined;
          this.hookProgress(client);
        }
      }),
    );
    try {
      await client.start();
    } catch (e) {
      const detail = this.stderrTail.slice(-3).join(' ') || (e instanceof Error ? e.message : String(e));
      this.unavailable = startFailedMessage(exe, detail);
      this.tell(`start:${exe}`, this.unavailable);
      this.client = undefined;
      void client.dispose().catch(() => undefined);
      return undefined;
    }
    return client;
  }

  private wasRunning = false;

  /** Server-initiated work-done progress ($/progress after window/workDoneProgress/create) drives the status bar and build log. */
  private hookProgress(client: NixlayerClient): void {
    // Replaces the client's built-in handler (registered while the client starts).
    client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
      this.watchProgress(client, token);
    });
  }

  private watchProgress(client: NixlayerClient, token: string | number): void {
    const key = String(token);
    if (this.watchedTokens.has(key)) return;
    const d = client.onProgress(WorkDoneProgress.type, token, (value) => this.onProgress(key, value as ProgressValue));
    this.watchedTokens.set(key, { token, client, dispose: () => d.dispose() });
  }

  private onProgress(key: string, value: ProgressValue): void {
    this.progressSeen.add(key);
    if (value.kind === 'begin' && !this.tracker.running) {
      this.buildChannel.appendLine(`──── ${new Date().toLocaleTimeString()} ────`);
    }
    for (const line of this.tracker.update(key, value)) this.buildChannel.appendLine(line);
    if (value.kind === 'end') {
      this.watchedTokens.get(key)?.dispose();
      this.watchedTokens.delete(key);
    }
    void vscode.commands.executeCommand('setContext', 'nixlayer.building', this.tracker.running);
    this.renderStatus();
  }

  /** Cancels the running builds (window/workDoneProgress/cancel on their progress tokens). */
  private cancelBuilds(): void {
    const running = this.tracker.runningTokens();
    if (running.length === 0) {
      void vscode.window.setStatusBarMessage('nixlayer: no build is running', 3000);
      return;
    }
    for (const key of running) {
      const w = this.watchedTokens.get(key);
      if (w) void w.client.sendNotification(WorkDoneProgressCancelNotification.type, { token: w.token });
    }
    this.buildChannel.appendLine('cancelling the build…');
  }

  private renderStatus(): void {
    const s = this.tracker.status();
    if (this.hideTimer) clearTimeout(this.hideTimer);
    this.hideTimer = undefined;
    if (!s.text) {
      this.statusItem.hide();
      return;
    }
    this.statusItem.text = s.text;
    this.statusItem.tooltip = s.tooltip;
    this.statusItem.backgroundColor =
      s.state === 'failed' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    this.statusItem.show();
    if (s.state === 'succeeded' || s.state === 'failed') {
      this.hideTimer = setTimeout(
        () => {
          this.tracker.clearResult();
          this.statusItem.hide();
        },
        s.state === 'failed' ? 60_000 : 15_000,
      );
    }
  }

  private tell(key: string, message: string): void {
    if (!this.once.shouldShow(key)) return;
    void vscode.window.showErrorMessage(message, 'Open Settings', 'Show Output').then((choice) => {
      if (choice === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'nixlayer.path');
      if (choice === 'Show Output') this.serverChannel.show(true);
    });
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    for (const d of this.clientDisposables.splice(0)) d.dispose();
    for (const d of this.watchedTokens.values()) d.dispose();
    this.watchedTokens.clear();
    if (c) {
      try {
        await c.stop(2000);
      } catch {
        // already stopped
      }
      await c.dispose().catch(() => undefined);
    }
  }

  async restart(byUser: boolean): Promise<void> {
    if (byUser) this.once.reset();
    this.restarts.reset();
    await this.starting?.catch(() => undefined);
    await this.stop();
    const c = await this.start();
    if (c && byUser) void vscode.window.setStatusBarMessage('nixlayer: language server restarted', 3000);
  }

  // -------------------------------------------------------------------------
  // Commands

  private async runServerCommand(command: string, rawArg: unknown): Promise<unknown> {
    const editor = vscode.window.activeTextEditor;
    // From a layer's file (the Phase Tree), commands are about the .nix file last edited.
    const activeNix = editor && isNixDocument(editor.document) ? editor.document.uri.toString() : this.lastNix;
    const arg = normalizeCommandArg(rawArg instanceof vscode.Uri ? rawArg.toString() : rawArg, activeNix);
    if (!arg.uri) {
      void vscode.window.showWarningMessage(`nixlayer: open a .nix file first (${command} works on the file's derivation).`);
      return undefined;
    }
    if (needsPhase(command) && !arg.phase) {
      arg.phase = await this.pickPhase(vscode.Uri.parse(arg.uri), command);
      if (!arg.phase) return undefined;
    }
    if (command === 'nixlayer.chooseTarget' && !arg.target) {
      arg.target = await this.pickTarget(arg.uri);
      if (!arg.target) return undefined;
    }
    const client = await this.start();
    if (!client) {
      if (this.unavailable) {
        void vscode.window.showErrorMessage(this.unavailable, 'Open Settings').then((c) => {
          if (c) void vscode.commands.executeCommand('workbench.action.openSettings', 'nixlayer.path');
        });
      }
      return undefined;
    }
    // A client-initiated progress token, in case the server reports the build on it.
    const token = `nixlayer-${command}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const isBuild = command === 'nixlayer.build' || command === 'nixlayer.rebuildFrom';
    if (isBuild) this.watchProgress(client, token);
    let result: unknown;
    try {
      result = await client.sendRequest(ExecuteCommandRequest.type, {
        command,
        arguments: [arg],
        ...(isBuild ? { workDoneToken: token } : {}),
      });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.buildChannel.appendLine(`✗ ${command}${arg.phase ? ` ${arg.phase}` : ''}: ${msg}`);
      // A build the user cancelled is not an error worth a notification.
      if ((e as { code?: unknown }).code === LSPErrorCodes.RequestCancelled) return undefined;
      void vscode.window.showErrorMessage(`nixlayer: ${commandTitle(command)}: ${msg}`, 'Show Output').then((c) => {
        if (c) this.buildChannel.show(true);
      });
      return undefined;
    }
    if (isBuild) this.reportBuild(arg.uri, result, !this.progressSeen.delete(token));
    if (command === 'nixlayer.openShell') this.openShell(arg.phase ?? '', result);
    if (command === 'nixlayer.showLog') this.showLog(arg.phase ?? '', result);
    if (command === 'nixlayer.browse') {
      const t = browseFrom(result);
      if (t) await this.phaseTree.show(t);
      else void vscode.window.showErrorMessage('nixlayer: the server did not name a layer for this phase.');
    }
    if (command === 'nixlayer.diff') {
      const c = changesFrom(result);
      if (c) await this.phaseChanges.show(c);
      else void vscode.window.showErrorMessage('nixlayer: the server did not list the changes of this phase.');
    }
    return result;
  }

  private reportBuild(uri: string, result: unknown, logSummary: boolean): void {
    const o = buildOutcome(result);
    if (!o) return;
    if (o.ok) {
      // Without progress reports, the result is the only trace of the build.
      if (o.summary && logSummary) this.buildChannel.appendLine(`✓ ${o.summary}`);
      return;
    }
    const phase = o.failedPhase;
    this.buildChannel.appendLine(`✗ ${o.error ?? `failed${phase ? ` in ${phase}` : ''}`}`);
    const actions = phase ? ['Show Log', 'Open Shell', 'Show Output'] : ['Show Output'];
    void vscode.window
      .showErrorMessage(`nixlayer: the build failed${phase ? ` in ${phase}` : ''}.`, ...actions)
      .then((c) => {
        if (c === 'Show Log') void vscode.commands.executeCommand('nixlayer.showLog', { uri, phase });
        if (c === 'Open Shell') void vscode.commands.executeCommand('nixlayer.openShell', { uri, phase });
        if (c === 'Show Output') this.buildChannel.show(true);
      });
  }

  private async pickPhase(uri: vscode.Uri, command: string): Promise<string | undefined> {
    const editor = vscode.window.activeTextEditor;
    const here = editor && editor.document.uri.toString() === uri.toString() ? editor.selection.active.line : undefined;
    // The server knows the phases (the plan's, or the stdenv's) and where the attribute at the cursor belongs.
    let choices: PhaseChoices | undefined;
    const client = await this.start();
    if (client) {
      try {
        choices = phaseChoicesFrom(
          await client.sendRequest(PHASES_REQUEST, {
            textDocument: { uri: uri.toString() },
            position: { line: here ?? 0, character: 0 },
          }),
        );
      } catch (e) {
        this.serverChannel.appendLine(`${PHASES_REQUEST}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (!choices) {
      // An older server: the phases its lenses name.
      try {
        const lenses = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri);
        choices = { phases: phasesFromLenses(lenses) };
      } catch {
        // no lenses yet
      }
    }
    if (!choices || choices.phases.length === 0) {
      void vscode.window.showWarningMessage(`nixlayer: ${commandTitle(command)}: the server knows no phases of this file yet.`);
      return undefined;
    }
    if (here === undefined) choices.at = undefined;
    const pick = await vscode.window.showQuickPick(phasePickItems(choices), { placeHolder: `${commandTitle(command)}: choose a phase` });
    return pick?.label;
  }

  /** Asks the user which of the targets the server found for the file to evaluate and build. */
  private async pickTarget(uri: string): Promise<string | undefined> {
    const client = await this.start();
    if (!client) return undefined;
    let t;
    try {
      t = targetChoicesFrom(await client.sendRequest(TARGETS_REQUEST, { textDocument: { uri } }));
    } catch (e) {
      this.serverChannel.appendLine(`${TARGETS_REQUEST}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!t || t.choices.length < 2) {
      const what = t?.how ? `its target is ${t.how}` : 'it has no other target';
      void vscode.window.showInformationMessage(`nixlayer: nothing to choose for this file: ${what}.`);
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(targetPickItems(t), { placeHolder: 'nixlayer: which target builds this file?' });
    return pick?.name;
  }

  private openShell(phase: string, result: unknown): void {
    const cmdline = shellCommandFrom(result);
    if (!cmdline) {
      void vscode.window.showErrorMessage('nixlayer: the server did not return a shell command line.');
      return;
    }
    const cwd = shellCwdFrom(result) ?? this.workspaceFolder();
    const term = vscode.window.createTerminal({ name: `nixlayer shell · ${phase}`, cwd });
    term.show();
    term.sendText(cmdline, true);
  }

  private showLog(phase: string, result: unknown): void {
    const text = logTextFrom(result);
    this.phaseLogChannel.clear();
    this.phaseLogChannel.appendLine(`──── log of ${phase} ────`);
    this.phaseLogChannel.append(text ?? '(the server returned no log for this phase)');
    if (text && !text.endsWith('\n')) this.phaseLogChannel.appendLine('');
    this.phaseLogChannel.show(true);
  }
}

function isNixDocument(doc: vscode.TextDocument): boolean {
  return doc.languageId === 'nix' || doc.uri.path.endsWith('.nix');
}

function commandTitle(command: string): string {
  switch (command) {
    case 'nixlayer.build':
      return 'build';
    case 'nixlayer.rebuildFrom':
      return 'rebuild from phase';
    case 'nixlayer.openShell':
      return 'open shell at phase';
    case 'nixlayer.showLog':
      return 'show phase log';
    case 'nixlayer.browse':
      return 'browse phase tree';
    case 'nixlayer.diff':
      return 'phase changes';
    case 'nixlayer.cancel':
      return 'cancel build';
    case 'nixlayer.chooseTarget':
      return 'choose target';
    default:
      return command;
  }
}

let extension: Extension | undefined;

export function activate(context: vscode.ExtensionContext): void {
  extension = new Extension(context);
  context.subscriptions.push(extension);
  // Activated by a Nix file (or a command): start the server right away so that
  // lenses appear without waiting for the first command. Not awaited: commands
  // must not wait for the server.
  void extension.start();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
