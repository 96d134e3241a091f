# fish completion for orch: commands, options, option values, run and task
# ids (from the repository's .orch/orch.db), workflows, files. The
# candidates come from `orch __complete WORDS...` (lua/orch/complete.lua).
# Installed as /usr/share/fish/vendor_completions.d/orch.fish.

function __orch_complete
    set -l tokens (commandline -opc) (commandline -ct)
    set -l orch $tokens[1]
    set -e tokens[1]
    for c in (command $orch __complete $tokens 2>/dev/null)
        switch $c
            case :files
                __fish_complete_path (commandline -ct)
            case :dirs
                __fish_complete_directories (commandline -ct)
            case '*'
                echo $c
        end
    end
end

complete -c orch -f -a '(__orch_complete)'
