# bash completion for orch: commands, options, option values, run and task
# ids (from the repository's .orch/orch.db), workflows, files.
# The candidates come from `orch __complete WORDS...` (lua/orch/complete.lua),
# the same for bash, zsh and fish. Installed as
# /usr/share/bash-completion/completions/orch.

_orch() {
    local line=${COMP_LINE:0:COMP_POINT}
    local -a words
    # split the line ourselves: bash's COMP_WORDS breaks --color=always at '='
    read -ra words <<< "$line"
    if [[ $line == *[[:space:]] || ${#words[@]} -eq 0 ]]; then
        words+=("")
    fi
    local cur=${words[${#words[@]}-1]}
    local IFS=$'\n'
    local -a cand plain
    local c files=0 dirs=0
    cand=($("${words[0]}" __complete "${words[@]:1}" 2>/dev/null))
    for c in "${cand[@]}"; do
        case $c in
            :files) files=1 ;;
            :dirs) dirs=1 ;;
            *) plain+=("$c") ;;
        esac
    done
    COMPREPLY=()
    if (( ${#plain[@]} )); then
        COMPREPLY=($(compgen -W "${plain[*]}" -- "$cur"))
    fi
    if (( files )); then
        COMPREPLY+=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
    elif (( dirs )); then
        COMPREPLY+=($(compgen -d -- "$cur"))
        compopt -o filenames 2>/dev/null
    fi
    # bash replaces only the part of the word after the last '=' (or ':')
    # when those are word breaks: drop that prefix from the candidates
    local pre=${cur%"${cur##*[=:]}"}
    if [[ -n $pre && $COMP_WORDBREAKS == *"${pre: -1}"* ]]; then
        local i
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=${COMPREPLY[i]#"$pre"}; done
    fi
    # an option that takes its value after '=' waits for it
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -F _orch orch
