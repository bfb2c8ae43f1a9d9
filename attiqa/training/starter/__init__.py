"""The starter model: a working ATTIQA reward built offline from photographs that ship in packages.

* :mod:`~attiqa.training.starter.config`: :class:`StarterConfig`, the photo lists, the version;
* :mod:`~attiqa.training.starter.photos`: loading the photos and rendering variations of them;
* :mod:`~attiqa.training.starter.data`: the training stages' datasets;
* :mod:`~attiqa.training.starter.stages`: the training stages;
* :mod:`~attiqa.training.starter.report`: the hold-out report;
* :mod:`~attiqa.training.starter.build`: building, caching (``ensure_starter``) and saving.
"""
