// A phase's tree and what a phase changed, in VS Code's explorer: a read-only
// FileSystemProvider (scheme nixlayer-layer) fed by the language server's layer
// requests, a "Phase Tree" view over it, and a "Phase Changes" view whose
// entries open diff editors.

import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import {
  type BrowseTarget,
  type ChangeItem,
  fileTypeOf,
  LAYER_FILES_REQUEST,
  LAYER_SCHEME,
  type LayerFileInfo,
  layerErrorKind,
  NO_LAYER,
  type PhaseChanges,
  READ_LAYER_FILE_REQUEST,
} from './logic';

interface LayerFiles {
  info: LayerFileInfo;
  entries?: LayerFileInfo[];
}

/**
 * The files of layers, read through the language server. A complete layer
 * never changes, so answers are kept (a bounded number of them).
 */
export class LayerFileSystem implements vscode.FileSystemProvider {
  private readonly changed = new vscode.EventEmitter<vscode.FileChangeEvent[]>();
  readonly onDidChangeFile = this.changed.event;
  private readonly cache = new Map<string, LayerFiles>();

  constructor(private readonly client: () => Promise<LanguageClient | undefined>) {}

  private async files(uri: vscode.Uri): Promise<LayerFiles> {
    const key = uri.toString();
    const hit = this.cache.get(key);
    if (hit) return hit;
    const res = (await this.request(uri, LAYER_FILES_REQUEST, { layer: uri.authority, path: uri.path || '/' })) as LayerFiles;
    if (this.cache.size > 2000) this.cache.clear();
    this.cache.set(key, res);
    for (const e of res.entries ?? []) {
      if (e.type !== 'dir') this.cache.set(uri.with({ path: e.path }).toString(), { info: e });
    }
    return res;
  }

  private async request(uri: vscode.Uri, method: string, params: object): Promise<unknown> {
    const c = await this.client();
    if (!c) throw vscode.FileSystemError.Unavailable('the nixlayer language server is not running');
    try {
      return await c.sendRequest(method, params);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      switch (layerErrorKind(e)) {
        case 'notFound':
          throw vscode.FileSystemError.FileNotFound(uri);
        case 'gone':
          throw vscode.FileSystemError.Unavailable(msg);
      }
      throw vscode.FileSystemError.Unavailable(`nixlayer: ${msg}`);
    }
  }

  async stat(uri: vscode.Uri): Promise<vscode.FileStat> {
    if (uri.authority === NO_LAYER) return { type: vscode.FileType.File, ctime: 0, mtime: 0, size: 0 };
    const { info } = await this.files(uri);
    const mtime = Date.parse(info.mtime) || 0;
    return { type: fileTypeOf(info), ctime: mtime, mtime, size: info.size, permissions: vscode.FilePermission.Readonly };
  }

  async readDirectory(uri: vscode.Uri): Promise<[string, vscode.FileType][]> {
    if (uri.authority === NO_LAYER) return [];
    const res = await this.files(uri);
    return (res.entries ?? []).map((e) => [e.name, fileTypeOf(e)]);
  }

  async readFile(uri: vscode.Uri): Promise<Uint8Array> {
    if (uri.authority === NO_LAYER) return new Uint8Array();
    const chunks: Buffer[] = [];
    for (let offset = 0; ; ) {
      const r = (await this.request(uri, READ_LAYER_FILE_REQUEST, { layer: uri.authority, path: uri.path, offset })) as {
        data?: string;
        eof?: boolean;
      };
      const data = Buffer.from(r.data ?? '', 'base64');
      chunks.push(data);
      offset += data.length;
      if (r.eof || data.length === 0) break;
    }
    return Buffer.concat(chunks);
  }

  watch(): vscode.Disposable {
    return new vscode.Disposable(() => undefined); // a layer does not change
  }

  private readonly readOnly = (uri: vscode.Uri): never => {
    throw vscode.FileSystemError.NoPermissions(`${uri.path} is in a layer of the nixlayer cache, which is read-only`);
  };

  writeFile(uri: vscode.Uri): void {
    this.readOnly(uri);
  }
  createDirectory(uri: vscode.Uri): void {
    this.readOnly(uri);
  }
  delete(uri: vscode.Uri): void {
    this.readOnly(uri);
  }
  rename(uri: vscode.Uri): void {
    this.readOnly(uri);
  }
}

/** An entry of the Phase Tree view: a file of the layer. */
class TreeEntry extends vscode.TreeItem {
  constructor(
    readonly uri: vscode.Uri,
    type: vscode.FileType,
    label?: string,
  ) {
    const dir = (type & vscode.FileType.Directory) !== 0;
    super(uri, dir ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    this.isDir = dir;
    if (label) this.label = label;
    if ((type & vscode.FileType.SymbolicLink) !== 0) this.description = '→ link';
    if (!dir) this.command = { command: 'vscode.open', title: 'Open', arguments: [uri, { preview: true }] };
    this.contextValue = dir ? 'nixlayer.layerDir' : 'nixlayer.layerFile';
    this.tooltip = uri.path;
  }
  readonly isDir: boolean;
}

/** The Phase Tree view: the tree a phase left (its /build and outputs). */
export class PhaseTreeView implements vscode.TreeDataProvider<TreeEntry>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<TreeEntry | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private target: BrowseTarget | undefined;
  readonly view: vscode.TreeView<TreeEntry>;

  constructor(private readonly fs: LayerFileSystem) {
    this.view = vscode.window.createTreeView('nixlayer.phaseTree', { treeDataProvider: this, showCollapseAll: true });
  }

  dispose(): void {
    this.view.dispose();
    this.changed.dispose();
  }

  async show(t: BrowseTarget): Promise<void> {
    this.target = t;
    this.view.title = t.label;
    this.view.description = t.state === 'failed' ? 'the failed state' : t.state === 'earlier' ? 'an earlier build' : undefined;
    this.view.message = t.note;
    this.changed.fire(undefined);
    await vscode.commands.executeCommand('setContext', 'nixlayer.phaseTreeOpen', true);
    await vscode.commands.executeCommand('nixlayer.phaseTree.focus');
  }

  getTreeItem(e: TreeEntry): vscode.TreeItem {
    return e;
  }

  async getChildren(e?: TreeEntry): Promise<TreeEntry[]> {
    const t = this.target;
    if (!t) return [];
    if (!e) {
      return t.roots.map((root) => {
        const r = new TreeEntry(vscode.Uri.from({ scheme: LAYER_SCHEME, authority: t.layer, path: root }), vscode.FileType.Directory, root);
        r.collapsibleState = vscode.TreeItemCollapsibleState.Expanded;
        return r;
      });
    }
    const entries = await this.fs.readDirectory(e.uri);
    entries.sort(([a, ta], [b, tb]) => Number((tb & 2) !== 0) - Number((ta & 2) !== 0) || a.localeCompare(b));
    return entries.map(([name, type]) => new TreeEntry(vscode.Uri.joinPath(e.uri, name), type));
  }
}

/** An entry of the Phase Changes view. */
class ChangeEntry extends vscode.TreeItem {
  constructor(
    readonly change: ChangeItem,
    title: string,
  ) {
    super(change.label, vscode.TreeItemCollapsibleState.None);
    this.description = change.description;
    this.tooltip = `${change.path} (${change.kind})`;
    this.iconPath = new vscode.ThemeIcon(
      change.kind === 'added' ? 'diff-added' : change.kind === 'removed' ? 'diff-removed' : 'diff-modified',
    );
    this.resourceUri = vscode.Uri.parse(change.kind === 'removed' ? change.left : change.right);
    this.command = {
      command: 'vscode.diff',
      title: 'Open Changes',
      arguments: [vscode.Uri.parse(change.left), vscode.Uri.parse(change.right), `${change.label} (${title})`, { preview: true }],
    };
    this.contextValue = `nixlayer.change.${change.kind}`;
  }
}

/** The Phase Changes view: what one phase added, changed, removed. */
export class PhaseChangesView implements vscode.TreeDataProvider<ChangeEntry>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<ChangeEntry | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private changes: PhaseChanges | undefined;
  readonly view: vscode.TreeView<ChangeEntry>;

  constructor() {
    this.view = vscode.window.createTreeView('nixlayer.phaseChanges', { treeDataProvider: this });
  }

  dispose(): void {
    this.view.dispose();
    this.changed.dispose();
  }

  async show(c: PhaseChanges): Promise<void> {
    this.changes = c;
    const counts = (k: string) => c.items.filter((i) => i.kind === k).length;
    this.view.title = `${c.label}: changes`;
    this.view.description = `${counts('added')} added, ${counts('changed')} changed, ${counts('removed')} removed`;
    this.view.message = c.items.length === 0 ? `${c.phase} changed no file.` : c.truncated ? 'Only the first changes are listed.' : undefined;
    this.changed.fire(undefined);
    await vscode.commands.executeCommand('setContext', 'nixlayer.phaseChangesOpen', true);
    await vscode.commands.executeCommand('nixlayer.phaseChanges.focus');
  }

  getTreeItem(e: ChangeEntry): vscode.TreeItem {
    return e;
  }

  getChildren(e?: ChangeEntry): ChangeEntry[] {
    const c = this.changes;
    if (e || !c) return [];
    const title = `${c.basePhase ?? 'empty'} ↔ ${c.phase}`;
    return c.items.map((i) => new ChangeEntry(i, title));
  }
}
