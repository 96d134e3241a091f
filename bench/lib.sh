# bench/lib.sh: what the shell benchmarks share (sourced: . "$here/bench/lib.sh").

# bench_repo DIR: a git repository in DIR on branch main, one commit of one file.
bench_repo() {
  mkdir -p "$1"
  git -C "$1" init -q -b main
  echo x > "$1/a"
  git -C "$1" add -A
  git -C "$1" -c user.email=b@b -c user.name=b commit -qm init
}
