"""Micro-benchmark of the JSON-RPC dispatcher alone (no sockets): microseconds per ping.

    .venv/bin/python bench/dispatch_profile.py [--profile]
"""
import cProfile, pstats, time, json, sys, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twisted.internet.task import Clock
from camera_service.rpc.dispatcher import Dispatcher
from camera_service.rpc.registry import MethodRegistry
from camera_service.rpc.methods import system, subscriptions
from camera_service.rpc.session import Session
from camera_service.rpc.ratelimit import FixedWindow
from camera_service.metrics import RequestMetrics
from camera_service.health.model import Readiness
from camera_service.auth.identity import Identity
class App: pass
clock=Clock()
app=App(); app.metrics=RequestMetrics(clock.seconds); app.readiness=Readiness(); app.readiness.mark_started()
class A:
    def still_valid(self, i): return True
app.authenticator=A()
reg=MethodRegistry(); system.register(reg); subscriptions.register(reg)
d=Dispatcher(reg, app)
out=[]
s=Session(send=lambda m: out.append(json.dumps(m)), host="h", rate=FixedWindow(10**9,60,clock.seconds), auth_failures=FixedWindow(5,60,clock.seconds))
s.identity=Identity("u","viewer",None,"jwt")
msg=b'{"jsonrpc":"2.0","method":"ping","id":1}'
N=30000
t=time.perf_counter()
for i in range(N): d.process(s,msg,False)
sys.stdout.write(f"dispatcher: {(time.perf_counter()-t)/N*1e6:.1f} us per ping ({N} calls)\n")
if "--profile" in sys.argv:
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [d.process(s, msg, False) for _ in range(N)])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
