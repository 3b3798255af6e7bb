"""Image-text matching with Deep Boosting Learning (anchor and target branches; offline, online, momentum).

Builds on :mod:`imagetext`; never imports :mod:`t2i`. Filled by later issues.
"""
