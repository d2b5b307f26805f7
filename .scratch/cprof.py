import sys, cProfile, pstats, runpy
sys.argv = [".scratch/prof_ask.py", sys.argv[1], "time", "1"] + sys.argv[2:]
cProfile.run('runpy.run_path(".scratch/prof_ask.py", run_name="__main__")', ".scratch/out.prof")
s = pstats.Stats(".scratch/out.prof"); s.sort_stats("cumulative").print_stats(45)
s.sort_stats("tottime").print_stats(25)
