#!/bin/sh
# The TUI under a flood: 4 exec tasks each print N lines (default 50,000)
# as fast as they can. Prints, beside their targets:
#   - wall time with the TUI (on a pseudo-terminal, 160x45) against --no-tui
#     (target: at most 1.2x);
#   - orch's peak RSS with the TUI (target: under 100 MB);
#   - how long a key takes to show on screen while the 4 print (the help
#     dialog opened by '?', read back from the terminal; target: within one
#     frame, 33 ms).
#   bench/tui.sh [build/bin/orch] [N] [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
ORCH=$(realpath "${1:-build/bin/orch}")
N=${2:-50000}
ROUNDS=${3:-5}
WORK=$(mktemp -d /tmp/orch-bench-tui.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM

cd "$WORK"
git init -q repo
cd repo
git config user.email b@b
git config user.name b
echo x > README
git add README
git commit -qm init
mkdir -p .orch
# the last screen must not wait for a key
echo "require('orch.tui').config.hold = false" > .orch/init.lua
cat > plan.json <<EOF
{"goal": "flood", "tasks": [
 {"id": "a", "cmd": "seq -f 'alpha line %g' 1 $N"},
 {"id": "b", "cmd": "seq -f 'beta line %g' 1 $N"},
 {"id": "c", "cmd": "seq -f 'gamma line %g' 1 $N"},
 {"id": "d", "cmd": "seq -f 'delta line %g' 1 $N"}]}
EOF

ORCH="$ORCH" ROUNDS="$ROUNDS" N="$N" python3 - <<'PY'
import os, pty, time, select, struct, fcntl, termios, signal, subprocess, statistics

ORCH = os.environ['ORCH']
ROUNDS = int(os.environ['ROUNDS'])
N = int(os.environ['N'])
ENV = dict(os.environ, LANG='C.UTF-8', TERM='xterm-256color', ORCH_TUI_STATS=os.environ.get('ORCH_TUI_STATS', ''),
           ORCH_SOCKET_DIR=os.path.join(os.getcwd(), '..', 'sock'))
os.makedirs(ENV['ORCH_SOCKET_DIR'], mode=0o700, exist_ok=True)
ARGS = [ORCH, 'run', '--plan', 'plan.json', '--yes', '--in-place']

def peak_kb(pid, cur):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return max(cur, int(line.split()[1]))
    except OSError:
        pass
    return cur

def cpu_of(ru):
    return ru.ru_utime + ru.ru_stime

def no_tui():
    t0 = time.monotonic()
    p = subprocess.Popen(ARGS + ['--no-tui'], env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while True:
        done, st, ru = os.wait4(p.pid, os.WNOHANG)
        if done:
            break
        peak = peak_kb(p.pid, peak)
        time.sleep(0.05)
    return time.monotonic() - t0, peak, os.waitstatus_to_exitcode(st), cpu_of(ru)

HELP = b'focus the pane left / right'

def tui(keys):
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(ORCH, ARGS, ENV)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', 45, 160, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    t0 = time.monotonic()
    peak, lat, tail = 0, [], b''
    sent, shown, next_key = None, False, t0 + 0.2
    status, ru, next_peak = None, None, 0
    while True:
        now = time.monotonic()
        if keys and sent is None and now >= next_key:
            # '?' opens the help; any key closes it
            tail = b''
            os.write(fd, b'?')
            sent = time.monotonic()
        r, _, _ = select.select([fd], [], [], 0.005 if keys else 0.05)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b''
            if not data:
                break
            if sent is not None:
                tail = (tail + data)[-8192:]
                if HELP in tail:
                    lat.append(time.monotonic() - sent)
                    sent = None
                    os.write(fd, b'j')
                    next_key = time.monotonic() + 0.05
        if now >= next_peak:
            peak = peak_kb(pid, peak)
            next_peak = now + 0.05
        done, st, r_u = os.wait4(pid, os.WNOHANG)
        if done:
            status, ru = st, r_u
            break
    # drain what is left
    try:
        while select.select([fd], [], [], 0.05)[0] and os.read(fd, 65536):
            pass
    except OSError:
        pass
    if status is None:
        _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    os.close(fd)
    return wall, peak, os.waitstatus_to_exitcode(status), lat, cpu_of(ru)

print('bench/tui.sh: 4 tasks x %d lines, %d rounds (median)' % (N, ROUNDS))
plain, tuis, peaks, lats, cpu_plain, cpu_tui = [], [], [], [], [], []
for i in range(ROUNDS):
    # alternating which goes first, so that neither gets the warm caches
    for which in (('plain', 'tui') if i % 2 == 0 else ('tui', 'plain')):
        if which == 'plain':
            w, _, code, cpu = no_tui()
            assert code == 0, 'no-tui run exited %d' % code
            plain.append(w)
            cpu_plain.append(cpu)
        else:
            w, pk, code, _, cpu = tui(False)
            assert code == 0, 'tui run exited %d' % code
            tuis.append(w)
            peaks.append(pk)
            cpu_tui.append(cpu)
    print('  round %d: --no-tui %.2fs (cpu %.2fs), TUI %.2fs (cpu %.2fs), TUI peak RSS %.1f MB'
          % (i + 1, plain[-1], cpu_plain[-1], tuis[-1], cpu_tui[-1], peaks[-1] / 1024))
_, pk, code, lat, _ = tui(True)
peaks.append(pk)
assert code == 0, 'tui run (keys) exited %d' % code
mp, mt = statistics.median(plain), statistics.median(tuis)
ratio = mt / mp
print('wall --no-tui     %7.2f s' % mp)
print('wall TUI          %7.2f s   ratio %.2fx   (target <= 1.20x) %s' % (mt, ratio, 'ok' if ratio <= 1.2 else 'MISSED'))
cp, ct = statistics.median(cpu_plain), statistics.median(cpu_tui)
print('cpu (orch + tasks) --no-tui %.2f s, TUI %.2f s: %.2fx (the machine\'s load hits wall time, less so cpu)'
      % (cp, ct, ct / cp))
rss = max(peaks) / 1024
print('peak RSS (TUI)    %7.1f MB  (target < 100 MB) %s' % (rss, 'ok' if rss < 100 else 'MISSED'))
if lat:
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000
    mx = lat[-1] * 1000
    print('key to screen     p50 %.1f ms, p95 %.1f ms, max %.1f ms over %d keys  (target <= 33 ms) %s'
          % (p50, p95, mx, len(lat), 'ok' if p95 <= 33 else 'MISSED'))
else:
    print('key to screen     no key measured (the run ended first: raise N)')
PY
