"""A stand-in application whose jobs live in an APScheduler store.

jobctl's tests write stores with these functions and classes, then run jobctl where this
package cannot be imported, exactly as an operator would.
"""
