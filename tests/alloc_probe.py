"""Run by tests/test_e2e.py in a fresh process: does freed tensor memory leave the resident set?"""
import torch

from r1.allocator import return_freed_memory

def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
on = return_freed_memory()
t = torch.empty(16 << 18)  # 16 MB, mapped and freed: glibc's dynamic threshold rises past 8 MB blocks
t.fill_(1); del t
big, pins = [], []
for _ in range(64):
    x = torch.empty(2 << 20); x.fill_(1); big.append(x)  # 8 MB each
    pins.append(torch.ones(64))  # small live blocks between them
before = rss(); del big, x; after = rss()
print(on, round(before), round(after))
