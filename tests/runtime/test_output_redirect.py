"""A block's stdout and stderr into a log file (runtime/output_redirect.py), file descriptors included."""

import os
import subprocess
import sys

from runtime.output_redirect import output_to


def test_output_to_sends_python_and_file_descriptor_output_to_the_log_and_restores(tmp_path, capfd):
    log = tmp_path / "cell" / "log.txt"
    with output_to(log):
        print("from python")
        os.write(2, b"from fd 2\n")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
    print("back on the console")
    captured = capfd.readouterr()
    assert log.read_text().splitlines() == ["from python", "from fd 2", "from a child"]
    assert captured.out == "back on the console\n" and captured.err == ""
