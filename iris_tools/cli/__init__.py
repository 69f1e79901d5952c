"""What every command line of the tools shares, below all of them: how a command refuses or fails (failures) and
how it prints a table (tables). It imports only the settings table and the Google API clients."""
