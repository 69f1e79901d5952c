"""Benchmark fixture: the Docker tutorial's app, rebuilt as it was.

The plain Flask development server; the model unpickled with pickle.load at import;
clf.predict on every GET. Usage: python tutorial_flask.py MODEL.pkl PORT
"""

import pickle
import sys

from flask import Flask, jsonify, request

with open(sys.argv[1], "rb") as file:
    clf = pickle.load(file)

CLASSES = ["setosa", "versicolor", "virginica"]
app = Flask(__name__)


@app.route("/")
def predict():
    length = float(request.args.get("length"))
    width = float(request.args.get("width"))
    predicted = clf.predict([[length, width]])[0]
    return jsonify({"predicted_class": CLASSES[predicted], "sepal_length": length, "sepal_width": width})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]))
