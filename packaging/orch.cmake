# Man pages, shell completions and the Debian package (CPack's DEB
# generator): included from CMakeLists.txt. See docs/install.md.

# ---------------------------------------------------------------- man pages
# orch(1), orch-CMD(1) from lua/orch/cli.lua (the text of `orch help CMD`),
# orch-plan(5), orch-roles(5) from docs/. The built orch writes them
# (scripts/man.lua) into build/share/man, beside build/bin as in the
# installed layout, so `man orch-run` finds them when build/bin is on PATH.
set(ORCH_MAN_DIR ${CMAKE_BINARY_DIR}/share/man)
set(ORCH_MAN_STAMP ${CMAKE_BINARY_DIR}/man.stamp)
file(GLOB ORCH_MAN_LUA CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/lua/orch/*.lua)
add_custom_command(
  OUTPUT ${ORCH_MAN_STAMP}
  COMMAND ${CMAKE_COMMAND} -E env ORCH_RUNTIME=${CMAKE_BINARY_DIR}/share/orch
          ASAN_OPTIONS=detect_leaks=0
          $<TARGET_FILE:orch> -l ${CMAKE_SOURCE_DIR}/scripts/man.lua ${ORCH_MAN_DIR}
          ${CMAKE_SOURCE_DIR}
  COMMAND ${CMAKE_COMMAND} -E touch ${ORCH_MAN_STAMP}
  DEPENDS orch ${ORCH_MAN_LUA} ${CMAKE_SOURCE_DIR}/scripts/man.lua
          ${CMAKE_SOURCE_DIR}/docs/plans.md ${CMAKE_SOURCE_DIR}/docs/roles.md
  COMMENT "Writing the man pages"
  VERBATIM)
add_custom_target(man ALL DEPENDS ${ORCH_MAN_STAMP})
install(DIRECTORY ${ORCH_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR})

# ---------------------------------------------------------------- completions
set(ORCH_BASH_COMPLETION_DIR ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
    CACHE STRING "where the bash completion goes (relative to the prefix)")
set(ORCH_ZSH_COMPLETION_DIR ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions
    CACHE STRING "where the zsh completion goes (Homebrew: share/zsh/site-functions)")
set(ORCH_FISH_COMPLETION_DIR ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d
    CACHE STRING "where the fish completion goes")
install(FILES ${CMAKE_SOURCE_DIR}/completions/orch.bash
        DESTINATION ${ORCH_BASH_COMPLETION_DIR} RENAME orch)
install(FILES ${CMAKE_SOURCE_DIR}/completions/_orch DESTINATION ${ORCH_ZSH_COMPLETION_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/completions/orch.fish DESTINATION ${ORCH_FISH_COMPLETION_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/debian/copyright
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---------------------------------------------------------------- package
# scripts/package.sh runs `cpack -G DEB` in a build directory. The runtime
# dependencies are written out (not dpkg-shlibdeps): one per library the
# executable and lib/orch/*.so link (spec/packaging_spec.lua checks each
# NEEDED library belongs to one of them), plus what orch loads at run
# time: lua-cjson, lua-yaml, lua-busted (orch test), git.
set(CPACK_PACKAGE_NAME orch)
set(CPACK_PACKAGE_VENDOR "orch")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "orch maintainers <orch@orch.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "run a plan of tasks with AI agents in parallel git worktrees")
set(CPACK_PACKAGE_DESCRIPTION
    "orch runs a plan (a DAG of tasks) in parallel, each task in its own git worktree
and branch, merging finished work back; given a goal, its orchestrator agent
plans it and coding agents (Claude Code, Codex, Crush, or an OpenAI-compatible
or Anthropic endpoint) carry it out, with review and test rounds. State lives
in SQLite, so a crash or Ctrl+C loses nothing and orch resume carries on.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://orch.invalid/")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.34), libluajit-5.1-2, libuv1 (>= 1.44), libsqlite3-0 (>= 3.35), \
libgit2-1.5, libcurl4 (>= 7.80), libncursesw6 (>= 6.1), libtinfo6 (>= 6.1), \
lua-cjson, lua-yaml, lua-busted, git")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "bubblewrap, man-db, bash-completion")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "tmux")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
