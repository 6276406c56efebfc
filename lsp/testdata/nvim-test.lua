-- Headless Neovim 0.7 test of nixlayer's language server, run by
-- TestNeovim as: nvim --headless -u nvim-test.lua FILE
-- Environment: NIXLAYER_BIN (the server), NIXLAYER_ROOT (workspace
-- folder), NIXLAYER_OUT (where the JSON results go).
local bin = os.getenv("NIXLAYER_BIN")
local root = os.getenv("NIXLAYER_ROOT")
local out = os.getenv("NIXLAYER_OUT")
local results = { errors = {} }

local function finish()
  local f = io.open(out, "w")
  f:write(vim.fn.json_encode(results))
  f:close()
  vim.lsp.stop_client(vim.lsp.get_active_clients())
  vim.cmd("qa!")
end

local function main()
local ok, err = pcall(function()
  local client_id = vim.lsp.start_client({
    name = "nixlayer",
    cmd = { bin, "lsp" },
    root_dir = root,
  })
  local buf = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(buf, client_id)
  local doc = { uri = vim.uri_from_bufnr(buf) }

  -- Wait until the background evaluation has a plan (the summary lens
  -- counts phases), asking for lenses as an editor would.
  local t0 = vim.loop.hrtime()
  vim.wait(60000, function()
    local res = vim.lsp.buf_request_sync(buf, "textDocument/codeLens", { textDocument = doc }, 1000)
    for _, r in pairs(res or {}) do
      for _, lens in ipairs(r.result or {}) do
        if lens.command and lens.command.title:find("phases cached") then
          results.lenses = r.result
          return true
        end
      end
    end
    return false
  end, 100)
  results.wait_ms = (vim.loop.hrtime() - t0) / 1e6

  -- The built-in lens display (0.7 never refreshes by itself).
  vim.lsp.codelens.refresh()
  vim.wait(5000, function() return #vim.lsp.codelens.get(buf) > 0 end, 50)
  results.displayed = #vim.lsp.codelens.get(buf)

  -- Hover on postInstall.
  local line = vim.fn.search("postInstall =", "n") - 1
  local res = vim.lsp.buf_request_sync(buf, "textDocument/hover",
    { textDocument = doc, position = { line = line, character = 4 } }, 5000)
  for _, r in pairs(res or {}) do
    if r.result then results.hover = r.result.contents.value end
    if r.err then table.insert(results.errors, r.err.message) end
  end

  -- A command: the shell command line for installPhase.
  res = vim.lsp.buf_request_sync(buf, "workspace/executeCommand",
    { command = "nixlayer.openShell", arguments = { { uri = doc.uri, phase = "installPhase" } } }, 5000)
  for _, r in pairs(res or {}) do
    if r.result then results.shell = r.result.command end
    if r.err then table.insert(results.errors, r.err.message) end
  end

  -- Live lenses: edit preBuild (a longer sleep), build, and watch the
  -- lens of preBuild while the build runs, as a user refreshing lenses.
  local pre = vim.fn.search("preBuild =", "n") - 1
  local text = vim.api.nvim_buf_get_lines(buf, pre, pre + 1, false)[1]
  vim.api.nvim_buf_set_lines(buf, pre, pre + 1, false, { (text:gsub('sleep [0-9.]+', 'sleep 4')) })
  local built = nil
  vim.lsp.buf_request(buf, "workspace/executeCommand",
    { command = "nixlayer.build", arguments = { { uri = doc.uri } } },
    function(err, result)
      built = result or { error = err and err.message or "no result" }
    end)
  results.live = {}
  vim.wait(300000, function()
    local r = vim.lsp.buf_request_sync(buf, "textDocument/codeLens", { textDocument = doc }, 2000)
    for _, x in pairs(r or {}) do
      for _, lens in ipairs(x.result or {}) do
        local title = lens.command and lens.command.title or ""
        if lens.range.start.line == pre and not title:find("rebuild") and results.live[#results.live] ~= title then
          table.insert(results.live, title)
        end
      end
    end
    return built ~= nil
  end, 200)
  results.built = built
end)
if not ok then table.insert(results.errors, tostring(err)) end
finish()
end

-- With -u the script runs before FILE is loaded; start once it is.
vim.api.nvim_create_autocmd("VimEnter", { callback = main })
