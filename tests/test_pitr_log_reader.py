"""How a recovery watches its server's log (apps/recovery/pitr._LogReader): only what was written since the last
read is read and searched, whole lines only, and a message once seen stays seen."""
from apps.recovery.pitr import _NOT_REACHED, _READY, _LogReader


def test_the_log_is_read_as_it_grows_whole_lines_only(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"an earlier run's line: database system is ready to accept connections\n")
    reader = _LogReader(log, log.stat().st_size, (_READY, _NOT_REACHED))
    assert reader.read() == "" and not reader.seen(_READY)  # what came before the offset is not this run's
    with open(log, "ab") as fh:
        fh.write(b"LOG:  redo starts\nLOG:  database system is ready to acc")  # a line cut mid-message
        fh.flush()
        assert reader.read().endswith("redo starts\n") and not reader.seen(_READY)
        fh.write("ept connections \u00e9\n".encode())
    text = reader.read()
    assert text == "LOG:  redo starts\nLOG:  database system is ready to accept connections \u00e9\n"
    assert reader.seen(_READY) and not reader.seen(_NOT_REACHED)
    with open(log, "ab") as fh:
        fh.write(b"FATAL:  " + _NOT_REACHED.encode() + b"\nLOG:  database system is shut down\n" + b"x" * 500 + b"\n")
    reader.read()
    assert reader.seen(_NOT_REACHED) and reader.seen(_READY)  # still seen, however much came after
    assert reader.read() == reader.text  # nothing new: the same text
