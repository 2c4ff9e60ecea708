"""Widgets shared by the screens: the batched log pane, the hosts x phases board, the bar chart."""
