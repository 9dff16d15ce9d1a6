from minicontainer.main import entry

entry()
