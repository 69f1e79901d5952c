"""`make import-model`: a user's own fitted scikit-learn estimator or Pipeline (a .joblib, .pkl or .skops file)
checked, described and written as a model version folder that the one shared handler serves.

    reading     the file, under the trust rules of shared/safe_pickle.py (skops's own list for .skops)
    describing  what it is: classifier or regressor, its features with their types, its classes
    writing     functions/<NAME>/ (main.py, model.joblib, model.json), whole or not at all
"""
