# bash completion for stasis: commands, their options, container names and folders.
# Installed as share/bash-completion/completions/stasis.

_stasis_containers() {
  # Names of the containers under the --root given on the line (or the default); quietly
  # nothing when that is not readable (not root).
  local root=() i
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    [[ ${COMP_WORDS[i]} == --root ]] && root=(--root "${COMP_WORDS[i + 1]}")
  done
  stasis "${root[@]}" ps "$@" -q 2>/dev/null
}

# Files, or folders with -d (bash-completion's _filedir when it is there).
_stasis_files() {
  if declare -F _filedir >/dev/null; then
    _filedir "$@"
  elif [[ $1 == -d ]]; then
    COMPREPLY=($(compgen -d -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}

_stasis() {
  # Works without the bash-completion package too (words split on blanks only, then).
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion || return
  else
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${words[cword]}
    prev=${words[cword - 1]}
  fi

  local commands="run ps inspect stop wait exec attach logs kill rm freeze thaw dump restore show check serve migrate"
  local global="--root --verbose -v --log-file --help -h --version"

  # The command: the first word that is not a global option or its value.
  local i command="" at=0
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      --root | --log-file) ((i++)) ;;
      -*) ;;
      *) command=${words[i]}; at=$i; break ;;
    esac
  done

  case $prev in
    --root | -D | --dir | --images-dir | --rootfs | -w | --workdir)
      _stasis_files -d
      return ;;
    --log-file | --log | -v | --volume | --inherit-fd | --allow-changed-file | --device)
      [[ -n $command || $prev != -v ]] && { _stasis_files; return; } ;;
    -s | --signal)
      COMPREPLY=($(compgen -W "TERM KILL INT HUP QUIT USR1 USR2 STOP CONT" -- "$cur"))
      return ;;
    --net)
      COMPREPLY=($(compgen -W "loopback veth host" -- "$cur"))
      return ;;
    --cgroup-driver)
      COMPREPLY=($(compgen -W "auto v1 v2" -- "$cur"))
      return ;;
    --compression | --compress)
      COMPREPLY=($(compgen -W "none lz4 zstd" -- "$cur"))
      return ;;
    -t)
      # stop -t SECONDS; run -t is a flag
      [[ $command == stop ]] && return ;;
    --format)
      COMPREPLY=($(compgen -W "table json" -- "$cur"))
      return ;;
    --detach-keys | --name | --memory | --cpus | --pids | --cpuset | --hostname | -e | --env | --ip | --host-ip | --time | \
      --pid | --ghost-limit | --pages | --id | --max-downtime | --max-rounds)
      return ;;
  esac

  if [[ -z $command ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    fi
    return
  fi

  local opts=""
  case $command in
    run) opts="--name -d --detach --memory --cpus --pids --cpuset --hostname -e --env -w --workdir -v --volume --net
               --ip --host-ip --cgroup-driver --rootfs --log --rm --device --init -i --interactive -t --tty
               --detach-keys" ;;
    attach) opts="--detach-keys --no-stdin" ;;
    logs) opts="-f --follow" ;;
    ps) opts="-a --all -q --quiet --format --json" ;;
    stop) opts="-t --time" ;;
    kill) opts="-s --signal" ;;
    rm) opts="-f --force" ;;
    dump) opts="-D --dir --pid --leave-running --tcp-established --shell-job --compression --ghost-limit --tmpfs-limit --pre-dump --parent --quiet" ;;
    serve) opts="--listen --key --tls-cert --tls-key --tls-ca --plaintext" ;;
    migrate) opts="--to --key --tls-cert --tls-key --tls-ca --plaintext --max-rounds --max-downtime --compress --tcp-established --json" ;;
    restore) opts="-D --dir --name -d --detach --log --inherit-fd --allow-changed-file --ip --host-ip" ;;
    show) opts="--verify --json --pages --id" ;;
    check) opts="--json" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
    return
  fi

  # Words after the command that are not options: what the command takes.
  local positional=0
  for ((i = at + 1; i < cword; i++)); do
    [[ ${words[i]} == -* ]] || ((positional++))
  done
  case $command in
    run)
      # From the job's command on, complete as for a command line.
      ((positional == 0)) && COMPREPLY=($(compgen -c -- "$cur")) || _stasis_files ;;
    exec)
      if ((positional == 0)); then
        COMPREPLY=($(compgen -W "$(_stasis_containers)" -- "$cur"))
      elif ((positional == 1)); then
        COMPREPLY=($(compgen -c -- "$cur"))
      else
        _stasis_files
      fi ;;
    ps | check | serve) ;;
    migrate) ((positional == 0)) && COMPREPLY=($(compgen -W "$(_stasis_containers)" -- "$cur")) ;;
    show) _stasis_files -d ;;
    restore) ;;
    rm | inspect | wait | dump | logs) COMPREPLY=($(compgen -W "$(_stasis_containers -a)" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$(_stasis_containers)" -- "$cur")) ;;
  esac
}
complete -F _stasis stasis
