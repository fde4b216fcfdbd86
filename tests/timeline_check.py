#!/usr/bin/python3
"""timeline_check.py: what a `train --timeline` file must hold (tests/test_recipes.c).

  timeline_check.py FILE RANKS STEPS MICRO LAYER,LAYER,... MIN_BUCKETS

The file parses as JSON (Chrome trace events); every rank 0..RANKS-1 is a process with STEPS
`step` slices; data/forward/backward/allreduce/optimizer lie inside their rank's step of the same
number; each layer's backward (cat "backward", named by the layer) lies inside a `backward` of
its rank and step, and every step has MICRO of each named layer; the slices of each (rank,
thread) nest (none overlaps another partly); each step has at least MIN_BUCKETS allreduce
buckets, bucket b on thread 1 + b, starting inside the step, and their bytes add up to the
step's gradient (the `allreduce` slice's bytes); MIN_BUCKETS 0 (one rank) wants none. With MIN_BUCKETS > 1 (the overlapped allreduce)
the first bucket must be posted before the step's last backward ends. Prints a summary; exits
non-zero with the first failure.
"""
import collections
import json
import sys


def span(e):
    """[start, end) in integer nanoseconds (the file has microseconds to 3 decimals): exact."""
    t0 = round(e['ts'] * 1000)
    return t0, t0 + round(e['dur'] * 1000)


def inside(e, p):
    (a, b), (c, d) = span(e), span(p)
    return c <= a and b <= d


def check_nesting(events):
    """Per (pid, tid): sorted by start (longer first), each slice inside or after the open ones."""
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[e['pid'], e['tid']].append(e)
    for key, evs in by_thread.items():
        evs.sort(key=lambda e: (e['ts'], -e['dur']))
        stack = []
        for e in evs:
            while stack and span(stack[-1])[1] <= span(e)[0]:
                stack.pop()
            assert not stack or inside(e, stack[-1]), ('partial overlap', key, stack[-1], e)
            stack.append(e)


def main():
    path, ranks, steps, micro = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    layers, min_buckets = sys.argv[5].split(','), int(sys.argv[6])
    d = json.load(open(path))
    ev = [e for e in d['traceEvents'] if e['ph'] == 'X']
    assert {e['pid'] for e in ev} == set(range(ranks)), 'ranks'
    check_nesting(ev)
    n_buckets = 0
    for r in range(ranks):
        mine = [e for e in ev if e['pid'] == r]
        st = {e['args']['step']: e for e in mine if e['name'] == 'step'}
        assert len(st) == steps, ('steps', r, len(st))
        backward = collections.defaultdict(list)
        for e in mine:
            if e['name'] in ('data', 'forward', 'backward', 'allreduce', 'optimizer'):
                assert e['tid'] == 0 and inside(e, st[e['args']['step']]), ('nesting', e)
            if e['name'] == 'backward':
                backward[e['args']['step']].append(e)
        assert all(len(b) == micro for b in backward.values()), 'micro-batches'
        per_step = collections.Counter()
        for e in (e for e in mine if e['cat'] == 'backward'):
            assert any(inside(e, b) for b in backward[e['args']['step']]), ('layer', e)
            assert e['args']['layer'], e
            per_step[e['args']['step'], e['name']] += 1
        for s in st:
            for name in layers:
                assert per_step[s, name] == micro, ('layer count', r, s, name)
        assert {n for _, n in per_step} == set(layers), ('layer names', set(per_step))
        top = sorted((e for e in mine if e['name'] in ('step', 'evaluate')), key=lambda e: e['ts'])
        for a, b in zip(top, top[1:]):
            assert span(a)[1] <= span(b)[0], ('overlap', a, b)
        grads = {e['args']['step']: e['args']['bytes'] for e in mine if e['name'] == 'allreduce'}
        buckets = collections.defaultdict(list)
        for e in (e for e in mine if e['cat'] == 'allreduce'):
            assert e['tid'] == 1 + int(e['name'].split()[1]), ('bucket thread', e)
            assert inside(dict(e, dur=0), st[e['args']['step']]), ('bucket start', e)
            buckets[e['args']['step']].append(e)
        for s in st:
            b = buckets[s]
            if min_buckets == 0:  # one rank: nothing is sent
                assert not b, ('buckets on one rank', b)
                continue
            assert len(b) >= min_buckets, ('buckets', r, s, len(b))
            assert grads[s] > 0 and sum(x['args']['bytes'] for x in b) == grads[s], ('bytes', s)
            if min_buckets > 1:
                first = min(b, key=lambda x: x['ts'])
                last_bw = max(span(x)[1] for x in backward[s])
                assert span(first)[0] < last_bw, ('not overlapped', s, first)
        n_buckets = max([n_buckets] + [len(b) for b in buckets.values()])
    print('timeline ok: %d events, %d ranks, %d layers per backward, up to %d buckets of %d bytes'
          ' per step' % (len(ev), ranks, len(layers), n_buckets, max(grads.values())))


main()
