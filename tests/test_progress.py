"""Progress on stderr: tqdm on a terminal, plain lines in a log, silent when disabled."""

import io
import time

from ufm.app.progress import Stages, Ticker, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_one_per_step_with_names():
    class Item:
        def __init__(self, name):
            self.name = name
    stream = io.StringIO()
    items = [Item("a"), Item("b")]
    assert list(progress(items, label="verify", stream=stream)) == items
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("verify 1/2") and lines[1].endswith("b")


def test_terminal_bar_is_tqdm_and_disabled_is_silent():
    stream = Terminal()
    assert list(progress(range(3), label="sweep", stream=stream)) == [0, 1, 2]
    text = stream.getvalue()
    assert "\r" in text and "3/3" in text and "sweep" in text
    quiet = Terminal()
    assert list(progress(range(3), enabled=False, stream=quiet)) == [0, 1, 2] and quiet.getvalue() == ""


def test_stages_name_each_stage():
    stream = io.StringIO()
    with Stages(["starts", "slice"], "landscape", stream=stream) as stage:
        stage("starts")
        stage("slice")
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/2", "2/2", "done"]
    assert lines[0].endswith("starts") and lines[1].endswith("slice")


def test_ticker_refreshes_elapsed_time_on_a_terminal_and_prints_two_lines_in_a_log():
    stream = Terminal()
    with Ticker("solve", stream=stream, interval=0.05):
        time.sleep(0.3)
    assert stream.getvalue().count("\r") >= 3          # redrawn while the work ran
    log = io.StringIO()
    with Ticker("solve: gradient descent", stream=log):
        pass
    lines = log.getvalue().splitlines()
    assert lines[0] == "solve: gradient descent ..." and lines[1].startswith("solve: gradient descent: ")


def test_solve_command_shows_progress_unless_asked_not_to(capsys):
    from ufm.app.cli import main

    assert main(["solve", "--counts", "3,3", "--method", "reduced"]) == 0
    assert "solve: the reduced program, n = 6" in capsys.readouterr().err
    assert main(["solve", "--counts", "3,3", "--method", "reduced", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
