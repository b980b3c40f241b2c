"""Plotting: one module per figure (``figNN.plot(tables, style)``), one shared style (:mod:`.style`).

Plots read aggregated tables only; each figure lives in its own file so that editing one
figure's code reruns only that figure's job.
"""
