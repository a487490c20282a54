"""What the MedImg Analysis module does, without Slicer: tasks, the child process, results, dependencies.

Nothing here imports slicer, qt, vtk or ctk; MedImgAnalysis.py holds only the glue to them.
"""
