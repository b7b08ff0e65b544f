# The guest-side driver, run once as the first turn of every session. It keeps the policy's
# code in a namespace of its own (state persists across executions, as in Thyme), runs each
# execution in its output directory, and reports the outcome on request as one JSON line.
import builtins as _vt_builtins
import json as _vt_json
import os as _vt_os
import sys as _vt_sys
import traceback as _vt_traceback


class _VtState:
    ns = {"__name__": "__main__", "__builtins__": _vt_builtins}
    error = None


def _vt_preload(src):
    exec(compile(src, "<preload>", "exec"), _VtState.ns)


def _vt_exec(src, out_dir, image_path, image_paths):
    ns = _VtState.ns
    _VtState.error = None
    ns["image_path"] = image_path
    ns["image_paths"] = image_paths
    ns["output_dir"] = out_dir
    ns.pop("processed_path", None)
    try:
        _vt_os.chdir(out_dir)
        exec(compile(src, "<code>", "exec"), ns)
    except SystemExit as e:
        _VtState.error = ("SystemExit", "exit code " + str(e.code))
    except BaseException as e:
        _VtState.error = (type(e).__name__, str(e)[:2000])
        tb = e.__traceback__
        # Drop this driver's own frame: the user sees their code's traceback only.
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        try:
            _vt_traceback.print_exception(type(e), e, tb, file=_vt_sys.stderr)
        except BaseException:
            pass
    finally:
        for stream in (_vt_sys.stdout, _vt_sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass


def _vt_report():
    p = _VtState.ns.get("processed_path")
    out = {
        "error": _VtState.error,
        "processed_path": p if isinstance(p, str) else None,
    }
    # Straight to fd 1: the policy's code may have replaced sys.stdout.
    _vt_os.write(1, (_vt_json.dumps(out) + "\n").encode())
