# Homebrew formula for orch (not published: for a tap of your own, or
#   brew install --build-from-source ./packaging/homebrew/orch.rb
# with HOMEBREW_ORCH_SOURCE pointing at a source tree or tarball).
# It builds with the same CMake options as scripts/package.sh (a Release
# build, Ninja) and installs the same layout: bin/orch, lib/orch/*.so,
# share/orch/{lua,roles,workflows,examples}, man pages, completions, docs.
# orch's core uses Linux interfaces (/proc, prctl's child subreaper), so this
# is for Homebrew on Linux; see docs/install.md.
class Orch < Formula
  desc "Run a plan of tasks with AI agents in parallel git worktrees"
  homepage "https://orch.invalid/"
  url ENV.fetch("HOMEBREW_ORCH_SOURCE", "https://orch.invalid/orch-0.1.0.tar.gz")
  version "0.1.0"
  head "https://orch.invalid/orch.git", branch: "main"

  depends_on "cmake" => :build
  depends_on "ninja" => :build
  depends_on "pkgconf" => :build
  depends_on "curl"
  depends_on "git"
  depends_on "libgit2"
  depends_on "libuv"
  depends_on "libyaml"
  depends_on "luajit"
  depends_on "ncurses"
  depends_on "sqlite"

  # The Lua C modules orch loads at run time (Debian: lua-cjson, lua-yaml,
  # lua-busted), built against LuaJIT into libexec.
  resource "lua-cjson" do
    url "https://github.com/mpx/lua-cjson.git", tag: "2.1.0"
  end

  resource "lyaml" do
    url "https://github.com/gvvaughan/lyaml.git", tag: "v6.2.8"
  end

  def luajit_inc
    Formula["luajit"].opt_include/"luajit-2.1"
  end

  def install
    lua_c = libexec/"lib/lua/5.1"
    lua_l = libexec/"share/lua/5.1"
    resource("lua-cjson").stage do
      system "make", "LUA_INCLUDE_DIR=#{luajit_inc}", "CC=#{ENV.cc}"
      lua_c.install "cjson.so"
    end
    resource("lyaml").stage do
      system ENV.cc, "-shared", "-fPIC", "-O2", "-I#{luajit_inc}",
             "-I#{Formula["libyaml"].opt_include}",
             "-DVERSION=\"6.2.8\"", "ext/yaml/yaml.c", "ext/yaml/emitter.c",
             "ext/yaml/parser.c", "ext/yaml/scanner.c",
             "-L#{Formula["libyaml"].opt_lib}", "-lyaml", "-o", "yaml.so"
      lua_c.install "yaml.so"
      lua_l.install Dir["lib/lyaml"]
    end

    # the same options as scripts/package.sh
    args = %W[
      -G Ninja
      -DCMAKE_BUILD_TYPE=Release
      -DORCH_ZSH_COMPLETION_DIR=share/zsh/site-functions
    ]
    system "cmake", "-S", ".", "-B", "build", *args, *std_cmake_args
    system "cmake", "--build", "build"
    system "cmake", "--install", "build"

    # orch finds its own modules beside the executable; the Lua C modules
    # above through LuaJIT's own variables
    (libexec/"bin").install bin/"orch"
    (bin/"orch").write_env_script libexec/"bin/orch",
      ORCH_RUNTIME: share/"orch",
      ORCH_LIBDIR:  lib/"orch",
      LUA_CPATH:    "#{lua_c}/?.so;;",
      LUA_PATH:     "#{lua_l}/?.lua;#{lua_l}/?/init.lua;;"
  end

  def caveats
    <<~EOS
      orch test needs busted: luarocks --lua-version=5.1 install busted
      The agent CLIs are installed separately (see docs/install.md).
    EOS
  end

  test do
    assert_match "orch #{version}", shell_output("#{bin}/orch --version")
    system bin/"orch", "plan", "check", share/"orch/examples/hello.yaml"
    system "git", "init", "-q", "repo"
    cd "repo" do
      system "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
             "--allow-empty", "-m", "start"
      system bin/"orch", "run", "--plan", share/"orch/examples/hello.yaml", "--yes", "--no-tui"
      assert_equal "HELLO, ORCH", (testpath/"repo/hello/shout.txt").read.strip
    end
  end
end
