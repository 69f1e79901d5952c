"""Model versions side by side on this machine: started, recorded, compared and stopped (`make up`, `make demo`).

  commands     the command line (python -m iris_tools.local up|demo|compare|status|stop)
  versions     a model version as a server: functions-framework in a process, or its image in a container
  servers      starting, waiting for and stopping a server (a process group or a container); used by every tool
  processes    what /proc says about a process: its start time (its identity) and whether it still runs
  state        what `make up` started, on disk; files written atomically
  comparison   every running version asked the same points, side by side
  reaper       stops the servers of a run that was killed before it could
"""
