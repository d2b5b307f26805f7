import sys, tempfile
from sqlalchemy import event
sys.path.insert(0, "tests/storage")
from assay.storage.factory import open_store
from assay.service.engine import Engine
from test_sql_round_trips import EXP, OBS
d = tempfile.mkdtemp()
store = open_store(f"sqlite:///{d}/a.db")
engine = Engine(store)
exp = engine.create_experiment(EXP)
for _ in range(3):
    engine.tell(engine.ask(exp.id, 1)[0].id, OBS)
sent = []
def before(conn, cursor, statement, parameters, context, executemany):
    sent.append(" ".join(statement.split())[:300])
event.listen(store.engine, "before_cursor_execute", before)
t = engine.ask(exp.id, 1)[0]
print("ASK"); [print(" ", s) for s in sent]; sent.clear()
engine.tell(t.id, OBS)
print("TELL"); [print(" ", s) for s in sent]
