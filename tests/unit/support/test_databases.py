"""The real PostgreSQL and MariaDB servers of tests/databases.py: start, load a CSV, password auth, clean stop.
Not skipped when the server binaries are missing: start_* then fails naming the Debian package to install."""
import os
import subprocess

import pytest
import sqlalchemy as sa
import yaml

from tests.support.databases import _children, load_csv, start_mysql, start_postgres
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV


def _ps() -> dict[int, str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {int(pid): args for pid, _, args in (line.strip().partition(" ") for line in out.splitlines())}


@pytest.mark.parametrize("start, scheme", [(start_postgres, "postgresql"), (start_mysql, "mysql")],
                         ids=["postgresql", "mysql"])
def test_server_roundtrip(tmp_path, start, scheme):
    server = start(str(tmp_path))
    try:
        assert server.url(driver=False) == f"{scheme}://beam@127.0.0.1:{server.port}/ml"
        assert server.url().startswith(f"{scheme}+") and server.password not in server.url()
        assert f":{server.password}@" in server.url(with_password=True)

        column_types = yaml.safe_load(open(PENGUINS_CONFIG))["column_types"]
        assert load_csv(server, "penguins", PENGUINS_CSV, column_types) == 344

        engine = sa.create_engine(server.url(with_password=True))
        try:
            with engine.connect() as conn:
                count, first, last, no_sex, no_bill = conn.execute(sa.text(
                    "SELECT COUNT(*), MIN(id), MAX(id), SUM(CASE WHEN sex IS NULL THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN bill_length_mm IS NULL THEN 1 ELSE 0 END) FROM penguins")).one()
                assert (count, first, last, no_sex, no_bill) == (344, 1, 344, 11, 2)  # 'NA' cells are NULL
                row = conn.execute(sa.text("SELECT species, bill_length_mm, year FROM penguins WHERE id = 1")).one()
                assert tuple(row) == ("Adelie", 39.1, 2007)
        finally:
            engine.dispose()

        wrong = server.create_engine(password="not-the-password")
        with pytest.raises(sa.exc.OperationalError):
            with wrong.connect():
                pass
        wrong.dispose()

        pids = [server.pid] + _children(server.pid)
        assert str(server.port) in " ".join(_ps()[pid] for pid in pids if pid in _ps())
    finally:
        server.stop()

    still = _ps()
    assert not [pid for pid in pids if pid in still], f"server processes left: {[still[p] for p in pids if p in still]}"
    assert not [args for args in still.values() if str(server.port) in args or server.data_dir in args]
    assert not os.path.exists(server.data_dir) or server.data_dir.startswith(str(tmp_path))
