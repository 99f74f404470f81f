"""Drop-in for the ``simple_knn`` extension that 3DGS and 2DGS vendor: ``simple_knn._C.distCUDA2``."""
